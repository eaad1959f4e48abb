"""Analyses that run as jobs (the operations center's OGC API – Processes): each one calls workflow
functions, stores its results as derived datasets with lineage and reports progress.

A process runs as ``run(ws, inputs, progress)``: ``ws`` is the workspace seen by the user who
submitted the job (reads are checked, masked and audited as that user), ``inputs`` the JSON
inputs checked against the process's input descriptions, ``progress(percent, message)`` reports
progress and raises :class:`Cancelled` when the job was cancelled. It returns a JSON-able dict
with at least ``datasets``: the derived datasets stored, as ``{"dataset", "version"}``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citytwin.foundation.errors import InputError

if TYPE_CHECKING:
    from citytwin.foundation.workspace import Workspace

__all__ = ["PROCESSES", "Cancelled", "Process", "check_inputs"]

#: progress(percent 0-100, message); raises Cancelled when the job was cancelled
Progress = Callable[[float, str], None]


class Cancelled(Exception):
    """Raised by a progress callback when its job was cancelled."""


@dataclass(frozen=True)
class Process:
    """An analysis offered as a job: id, title, inputs (JSON Schema per input) and the function."""

    id: str
    title: str
    description: str
    inputs: dict[str, dict[str, Any]]
    run: Callable[[Workspace, dict[str, Any], Progress], dict[str, Any]]
    required: tuple[str, ...] = ()
    outputs: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "datasets": {"title": "derived datasets stored", "schema": {"type": "array"}}})

    def describe(self) -> dict[str, Any]:
        """The OGC process description."""
        return {"id": self.id, "title": self.title, "description": self.description, "version": "1",
                "jobControlOptions": ["async-execute", "dismiss"],
                "inputs": {k: {**v, "minOccurs": 1 if k in self.required else 0} for k, v in self.inputs.items()},
                "outputs": self.outputs}


_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,), "number": (int, float),
                                       "boolean": (bool,), "object": (dict,), "array": (list,)}


def check_inputs(proc: Process, inputs: Any) -> dict[str, Any]:
    """The inputs of a job, checked against the process's descriptions (unknown or mistyped -> InputError).

    Examples
    --------
    >>> p = PROCESSES["spatial-structure"]
    >>> check_inputs(p, {"resolution": 8})["resolution"]
    8
    >>> check_inputs(p, {"resolution": "eight"})
    Traceback (most recent call last):
    ...
    citytwin.foundation.errors.InputError: field 'resolution': must be integer within [5, 11], got 'eight'
    """
    if not isinstance(inputs, dict):
        raise InputError("inputs must be a JSON object", field="inputs")
    out: dict[str, Any] = {}
    for k, v in inputs.items():
        spec = proc.inputs.get(k)
        if spec is None:
            raise InputError(f"process {proc.id!r} has no input {k!r}", field=str(k)[:100],
                             hint=f"inputs: {', '.join(proc.inputs)}")
        schema = spec.get("schema", {})
        typ = schema.get("type")
        ok = typ is None or (isinstance(v, _TYPES[typ]) and not (typ in ("integer", "number") and isinstance(v, bool)))
        if ok and "enum" in schema and v not in schema["enum"]:
            ok = False
        if ok and typ in ("integer", "number"):
            lo, hi = schema.get("minimum"), schema.get("maximum")
            ok = (lo is None or v >= lo) and (hi is None or v <= hi)
        if not ok:
            raise InputError(f"must be {typ}{' in ' + str(schema['enum']) if 'enum' in schema else ''}"
                             f"{' within ' + str([schema.get('minimum'), schema.get('maximum')]) if 'minimum' in schema else ''}"
                             f", got {v!r}"[:300], field=k)
        out[k] = v
    for k in proc.required:
        if k not in out:
            raise InputError(f"process {proc.id!r} needs input {k!r}", field=k)
    for k, spec in proc.inputs.items():
        if k not in out and "default" in spec.get("schema", {}):
            out[k] = spec["schema"]["default"]
    return out


def _dataset_name(text: str, what: str) -> str:
    from citytwin.foundation.catalog import check_name

    try:
        return check_name(text)
    except Exception as exc:  # an InputError naming the field
        raise InputError(str(exc), field=what) from None


def _dataset(ws: Workspace, text: Any, what: str) -> str:
    """A dataset input: a catalog name the user may read — never a file of the server (a job reads
    only governed data, checked and audited as the user who started it)."""
    name = _dataset_name(str(text), what)
    if Path(name).exists():
        raise InputError(f"{name!r} names a file in the server's folder as well as a dataset; not reading it",
                         field=what, hint="jobs read catalog datasets only")
    ws.info(name)  # exists, and the user may read it (AccessDenied otherwise)
    return name


def economy_index(ws: Workspace, inputs: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """B1–B3: the composite index of a panel dataset (:func:`citytwin.workflows.economy.build_index`)."""
    from citytwin.workflows.economy import build_index

    name = _dataset_name(inputs["name"], "name")
    _dataset(ws, inputs["panel"], "panel")
    progress(5, f"reading panel {inputs['panel']}")
    with tempfile.TemporaryDirectory(dir=ws.root / "tmp") as tmp:
        spec = Path(tmp) / "spec.json"  # YAML is a superset of JSON
        spec.write_text(json.dumps(inputs["spec"], ensure_ascii=False), encoding="utf-8")
        progress(20, f"computing the {inputs['method']} index")
        outp = build_index(inputs["panel"], spec, Path(tmp) / "out", inputs["method"], workspace=ws, name=name)
    progress(95, "stored")
    return {"datasets": [{"dataset": name, "version": outp.version},
                         {"dataset": f"{name}_weights", "version": ws.info(f"{name}_weights").current_version}],
            "warnings": list(outp.result.warnings), "rows": len(outp.scores)}


def economy_disparity(ws: Workspace, inputs: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """B4: disparity decompositions by period (:func:`citytwin.workflows.disparity.run_disparity`)."""
    from citytwin.workflows.disparity import run_disparity

    name = _dataset_name(inputs["name"], "name")
    _dataset(ws, inputs["panel"], "panel")
    if inputs.get("boundaries"):
        _dataset(ws, inputs["boundaries"], "boundaries")
    progress(5, f"reading panel {inputs['panel']}")

    def on_period(i: int, n: int) -> None:
        progress(10 + 85 * i / max(n, 1), f"period {i} of {n}")

    with tempfile.TemporaryDirectory(dir=ws.root / "tmp") as tmp:
        res = run_disparity(inputs["panel"], value=inputs["value"], group=inputs["group"], out=Path(tmp),
                            time=inputs.get("time"), weight=inputs.get("weight"),
                            boundaries=inputs.get("boundaries"), id_col=inputs.get("id"),
                            permutations=int(inputs["permutations"]), seed=int(inputs["seed"]), save_as=name,
                            workspace=ws,
                            on_period=on_period)
    stored = [{"dataset": d, "version": ws.info(d).current_version} for d in res.datasets]
    return {"datasets": stored, "rows_dropped": res.rows_dropped,
            "summary": json.loads(res.summary.to_json(orient="records"))}


def spatial_structure(ws: Workspace, inputs: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """D1, D3 (and D5 with ``life_circles``): centers, functional mix and life-circle coverage."""
    from citytwin.spatial.centers import find_centers
    from citytwin.spatial.mix import functional_mix
    from citytwin.workflows.spatial import life_circles, load_inputs, store_results

    name = _dataset_name(inputs["name"], "name")
    res_h3 = int(inputs["resolution"])
    for layer in ("pois", "buildings", "streets") if inputs.get("life_circles") else ("pois",):
        _dataset(ws, inputs[layer], layer)
    progress(5, f"reading {inputs['pois']}")
    inp = load_inputs(None, ws, {"pois"}, pois=inputs["pois"])
    progress(20, "finding centers (D1)")
    c = find_centers(inp.layers["pois"], resolution=res_h3, method=inputs["method"])
    stored = store_results(ws, f"{name}_centers", {"": c.centers, "cells": c.cells}, inp, c.report,
                           "Centers and polycentricity (D1)")
    progress(50, "functional mix (D3)")
    m = functional_mix(inp.layers["pois"], resolution=res_h3)
    stored += store_results(ws, f"{name}_mix", {"": m}, inp, {"resolution": res_h3,
                                                                "classes": m.attrs.get("classes")},
                            "Functional mix per H3 cell (D3)")
    out: dict[str, Any] = {"polycentricity": json.loads(json.dumps(c.indices, default=str))}
    if inputs.get("life_circles"):
        progress(65, "life circles on the street network (D5)")
        lc = life_circles(None, ws, pois=inputs["pois"], buildings=inputs["buildings"], streets=inputs["streets"],
                          minutes=float(inputs["minutes"]))
        frames = {k: v for k, v in vars(lc.result).items() if hasattr(v, "columns")}
        stored += store_results(ws, f"{name}_lifecircle", frames, lc.inputs, {"minutes": inputs["minutes"]},
                                "Life-circle coverage (D5)")
    progress(98, "stored")
    out["datasets"] = [{"dataset": d, "version": v} for d, v in stored]
    return out


def _s(desc: str, **schema: Any) -> dict[str, Any]:
    return {"title": desc, "schema": schema}


PROCESSES: dict[str, Process] = {p.id: p for p in (
    Process("economy-index", "Composite index (B1–B3)",
            "Entropy / TOPSIS / CRITIC / PCA composite index of a panel dataset; stores NAME and NAME_weights.",
            {"panel": _s("panel dataset name", type="string"),
             "spec": _s("index specification (id, time, indicators with direction)", type="object"),
             "method": _s("weighting method", type="string", enum=["entropy", "topsis", "critic", "pca", "equal"],
                          default="entropy"),
             "name": _s("name of the derived dataset", type="string", default="economy_index")},
            economy_index, required=("panel", "spec")),
    Process("economy-disparity", "Disparity and its decomposition (B4)",
            "Gini, Theil (between/within), Dagum, σ and Moran's I by period; stores NAME_* datasets.",
            {"panel": _s("long panel dataset", type="string"),
             "value": _s("value column", type="string"), "group": _s("group (region) column", type="string"),
             "time": _s("period column", type="string"), "weight": _s("population weight column", type="string"),
             "boundaries": _s("boundary polygons dataset, for Moran's I", type="string"),
             "id": _s("unit id column", type="string"),
             "permutations": _s("permutations for pseudo p-values", type="integer", minimum=0, maximum=9999,
                                default=99),
             "seed": _s("random seed of the permutations", type="integer", minimum=0, maximum=2**31 - 1,
                        default=12345),
             "name": _s("prefix of the derived datasets", type="string", default="economy_disparity")},
            economy_disparity, required=("panel", "value", "group")),
    Process("spatial-structure", "Spatial structure (D1, D3, D5)",
            "Centers and polycentricity, functional mix per H3 cell and, optionally, life-circle coverage.",
            {"pois": _s("POI dataset", type="string", default="helsinki_pois"),
             "buildings": _s("buildings dataset (life circles)", type="string", default="helsinki_buildings"),
             "streets": _s("streets dataset (life circles)", type="string", default="helsinki_streets"),
             "resolution": _s("H3 resolution", type="integer", minimum=5, maximum=11, default=9),
             "method": _s("center method", type="string", enum=["peaks", "getis_ord", "local_moran"],
                          default="peaks"),
             "life_circles": _s("also compute life circles (slower)", type="boolean", default=False),
             "minutes": _s("life-circle walking minutes", type="number", minimum=1, maximum=60, default=15),
             "name": _s("prefix of the derived datasets", type="string", default="spatial")},
            spatial_structure),
)}
