"""The curated public API: each package's ``__all__`` resolves, lazily, to its submodules' objects."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import pytest

import citytwin

PACKAGES = ["citytwin.economy", "citytwin.spatial", "citytwin.twin", "citytwin.service", "citytwin.planning",
            "citytwin.participation"]
#: what importing the packages must not load (``citytwin --help`` pays for every import)
HEAVY = ["pandas", "numpy", "numba", "mapclassify", "geopandas", "duckdb", "fastapi", "scipy", "matplotlib",
         "sklearn", "libpysal"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_resolves_to_the_submodules_objects(name: str) -> None:
    pkg = importlib.import_module(name)
    exports: dict[str, tuple[str, ...]] = getattr(pkg, "_EXPORTS", {})
    assert sorted(pkg.__all__) == sorted(n for names in exports.values() for n in names)
    assert len(set(pkg.__all__)) == len(pkg.__all__)
    submodules = {m.name for m in pkgutil.iter_modules(pkg.__path__)}
    assert set(exports) <= submodules
    # a public name equal to a submodule's would hide the submodule (``from citytwin.twin import aqi``)
    assert not set(pkg.__all__) & submodules
    for module, names in exports.items():
        mod = importlib.import_module(f"{name}.{module}")
        for n in names:
            assert getattr(pkg, n) is getattr(mod, n), f"{name}.{n}"
            assert n in dir(pkg)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        _ = pkg.no_such_name


def test_star_import_gives_all() -> None:
    ns: dict[str, object] = {}
    exec("from citytwin.economy import *", ns)
    from citytwin.economy.index import composite_index

    assert ns["composite_index"] is composite_index
    assert set(ns) - {"__builtins__"} == set(importlib.import_module("citytwin.economy").__all__)


def test_importing_the_packages_loads_no_heavy_library() -> None:
    code = ("import json, sys; import " + ", ".join(["citytwin", *PACKAGES])
            + f"; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_version() -> None:
    from importlib.metadata import version

    assert citytwin.__version__ == version("citytwin")
