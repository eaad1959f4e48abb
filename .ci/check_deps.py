"""Check the packaging against the code: run by ``.ci/run``; exit status 1 with one line per problem.

1. Every third-party module imported anywhere in ``src/`` (top-level or inside a function) belongs to
   a distribution declared in ``[project] dependencies`` of ``pyproject.toml`` (not only in an extra).
2. Every requirement of ``pyproject.toml`` (dependencies and extras) is pinned in ``requirements.lock``
   at a version that meets its lower bound.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req(spec: str) -> tuple[str, str | None]:
    """``"duckdb>=1.5.5"`` -> ``("duckdb", "1.5.5")``; ``"citytwin[test]"`` -> ``("citytwin", None)``."""
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(?:>=\s*([^,;\s]+))?", spec)
    if m is None:
        raise SystemExit(f"pyproject.toml: cannot read requirement {spec!r}")
    return _norm(m.group(1)), m.group(3)


def _imports(src: Path) -> dict[str, set[str]]:
    """Top-level names of absolute imports in ``src`` -> files that import them."""
    found: dict[str, set[str]] = {}
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v))


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = dict(_req(s) for s in project["dependencies"])
    extras = {k: dict(_req(s) for s in v) for k, v in project.get("optional-dependencies", {}).items()}
    lock = {}
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, ver = line.partition("==")
            lock[_norm(name)] = ver.strip()
    dists = packages_distributions()
    problems = []
    own = {"citytwin"}
    for module, files in sorted(_imports(ROOT / "src").items()):
        if module in sys.stdlib_module_names or module in own:
            continue
        owners = {_norm(d) for d in dists.get(module, [])}
        if not owners:
            problems.append(f"src imports {module!r} ({', '.join(sorted(files))}), which no installed "
                            "distribution provides")
        elif not owners & runtime.keys():
            where = [k for k, v in extras.items() if owners & v.keys()]
            problems.append(f"src imports {module!r} ({', '.join(sorted(files)[:3])}) but its distribution "
                            f"{'/'.join(sorted(owners))} is not in [project] dependencies"
                            + (f" (only in extra {', '.join(where)})" if where else ""))
    for group, reqs in [("dependencies", runtime), *[(f"extra {k}", v) for k, v in extras.items()]]:
        for name, low in reqs.items():
            if name in own:
                continue
            if name not in lock:
                problems.append(f"pyproject.toml {group}: {name} is not pinned in requirements.lock")
            elif low is not None and _version(lock[name]) < _version(low):
                problems.append(f"pyproject.toml {group}: {name}>={low} but requirements.lock pins {lock[name]}")
    for p in problems:
        print(f"check_deps: {p}")
    if not problems:
        print(f"check_deps: ok ({len(runtime)} runtime dependencies, every import of src/ declared; "
              f"{len(lock)} pins in requirements.lock)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
