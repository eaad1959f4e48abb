"""Build the bad-input corpus into a folder, and write its summary table.

    python tests/corpus/build.py OUT_DIR                 # the files + OUT_DIR/manifest.json
    python tests/corpus/build.py OUT_DIR --markdown docs/corpus.md
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from registry import Case, build, load_cases


def outcome_text(c: Case) -> str:
    if c.expect == "kept":
        return f"kept ({c.rows} rows)" if c.rows is not None else "kept"
    if c.expect == "quarantined":
        n = f"{c.quarantined} " if c.quarantined is not None else ""
        return f"{n}quarantined: {c.reason}" if c.reason else f"{n}quarantined"
    return f"error: {c.reason}" if c.reason else "error"


def markdown(cases: list[Case]) -> str:
    kinds = Counter(c.kind for c in cases)
    outs = Counter(c.expect for c in cases)
    lines = [
        "# The bad-input corpus",
        "",
        "Files a real user brings, built by `tests/corpus/build.py` (cases in `tests/corpus/cases_*.py`)",
        "and checked by `tests/corpus/test_corpus.py`: each ends as expected — every row kept (with the",
        "values the source meant), rows quarantined with their reason, or a clear error (exit 2, valid",
        "JSON with `--json`, no traceback). Regenerate this page with",
        "`python tests/corpus/build.py /tmp/corpus --markdown docs/corpus.md`.",
        "",
        f"{len(cases)} cases: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        + "; outcomes: " + ", ".join(f"{k} {n}" for k, n in sorted(outs.items())) + ".",
        "",
        "| case | kind | what | expected |",
        "|---|---|---|---|",
    ]
    for c in sorted(cases, key=lambda c: (c.kind, c.name)):
        what = c.what.replace("|", "\\|")
        lines.append(f"| `{c.name}` | {c.kind} | {what} | {outcome_text(c).replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--markdown", type=Path)
    a = ap.parse_args()
    cases = load_cases()
    files = build(a.out, cases)
    manifest = [{"name": c.name, "kind": c.kind, "what": c.what, "expect": c.expect, "rows": c.rows,
                 "quarantined": c.quarantined, "reason": c.reason, "ingest": c.ingest,
                 "files": [str(p.relative_to(a.out)) for p in files[c.name]]} for c in cases]
    (a.out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1, default=str),
                                         encoding="utf-8")
    if a.markdown:
        a.markdown.write_text(markdown(cases), encoding="utf-8")
    print(f"{len(cases)} cases written to {a.out}")


if __name__ == "__main__":
    main()
