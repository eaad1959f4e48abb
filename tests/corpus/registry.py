"""The bad-input corpus: each case is a file (or a few) that a real user might bring, built by code,
with the outcome ingest must give: every row kept, some rows quarantined with a reason, or a clear
error (a ``CitytwinError`` in Python; exit 2 and valid JSON with ``--json`` on the CLI).

Cases live in the ``cases_*.py`` modules beside this file; ``build.py`` writes them all to a folder
(with ``manifest.json``) and the summary table of ``docs/corpus.md``; ``test_corpus.py`` asserts
every expected outcome.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

HERE = Path(__file__).resolve().parent

Outcome = Literal["kept", "quarantined", "error"]


@dataclass
class Case:
    """One corpus case.

    ``make(folder)`` writes the input file(s) into ``folder`` and returns their paths (the first
    is the one named on the command line unless ``files`` says otherwise). ``ingest`` holds the
    keyword arguments of :func:`citytwin.foundation.ingest.ingest` (``dataset`` defaults to the
    case name, ``schema`` to ``"table"``). ``expect`` is the outcome; ``rows`` the rows kept;
    ``quarantined`` the rows quarantined; ``reason`` a text that the quarantine reasons (or the
    error message) must contain; ``check(ws, result)`` asserts stored values.
    """

    name: str
    kind: str
    what: str
    make: Callable[[Path], list[Path]]
    expect: Outcome
    ingest: dict[str, Any] = field(default_factory=dict)
    rows: int | None = None
    quarantined: int | None = None
    reason: str | None = None
    check: Callable[[Any, Any], None] | None = None
    group: str = ""


CASES: list[Case] = []


def case(name: str, kind: str, what: str, *, expect: Outcome, **kw: Any) -> Callable[[Callable[[Path], list[Path]]], Callable[[Path], list[Path]]]:
    """Register the decorated builder as a corpus case (see :class:`Case`)."""

    def deco(make: Callable[[Path], list[Path]]) -> Callable[[Path], list[Path]]:
        if any(c.name == name for c in CASES):
            raise ValueError(f"duplicate corpus case {name!r}")
        CASES.append(Case(name=name, kind=kind, what=what, make=make, expect=expect,
                          group=make.__module__.rsplit(".", 1)[-1], **kw))
        return make

    return deco


def load_cases() -> list[Case]:
    """Import every ``cases_*.py`` module beside this file (once) and return all cases."""
    for path in sorted(HERE.glob("cases_*.py")):
        mod_name = f"citytwin_corpus_{path.stem}"
        if mod_name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(mod_name, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = mod
        spec.loader.exec_module(mod)
    return list(CASES)


def build(folder: Path, cases: list[Case] | None = None) -> dict[str, list[Path]]:
    """Write the input files of every case into ``folder/NAME/``; return ``{name: paths}``."""
    out: dict[str, list[Path]] = {}
    for c in cases if cases is not None else load_cases():
        d = folder / c.name
        d.mkdir(parents=True, exist_ok=True)
        out[c.name] = [Path(p) for p in c.make(d)]
    return out
