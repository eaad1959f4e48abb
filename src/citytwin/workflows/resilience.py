"""Resilience workflows: read a panel (file or catalog dataset), call :mod:`citytwin.resilience`,
write the outputs to a folder, and return a JSON-serialisable summary (the CLI prints it).

Outputs (all in ``out``):

- :func:`measure`: ``resilience.csv`` (unit, period, sensitivity/resistance/recovery, or growth
  deviation per period) and ``measure.json`` (shock window and how it was chosen, reference series);
- :func:`model`: ``coefficients.csv`` (``term, estimate, std_error, t, p``) and ``model.json`` (N,
  R², R² within, clusters, dropped singletons, dropped rows ...);
- :func:`mechanism`: ``mechanism.csv`` (steps, Sobel, bootstrap interval, the X→M form),
  ``steps.csv`` and ``mechanism.json``;
- :func:`heterogeneity`: ``groups.csv``, ``pairs.csv``, ``heterogeneity.json``;
- :func:`report`: ``table.html``, ``table.tex``, ``table.docx``, ``coefficients.png``, ``report.json``.

With a workspace (given, or the one the panel was read from), :func:`measure`, :func:`model`,
:func:`mechanism`, :func:`heterogeneity`, :func:`threshold` and :func:`spatial` also store their
tables in the catalog as derived datasets (through
:func:`citytwin.workflows.spatial.store_results`), with lineage to the panel's dataset version when the
panel is a catalog dataset (a panel file is named, with its SHA-256, in the parameters). The names are
``store`` (default ``<panel>_<command>``, the panel's dataset name or file stem) and
``store_<table>`` for further tables; ``save=False`` stores nothing. The summary lists them under
``stored``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from citytwin.foundation.errors import InputError
from citytwin.resilience.results import PanelResult


def read_panel(source: str, *, workspace: str | Path | None = None, user: str | None = None,
               sheet: str | None = None) -> tuple[pd.DataFrame, str | None]:
    """A file (CSV, XLSX/XLS, Parquet) or, failing that, a dataset of the workspace (read through
    ``Workspace.read``: checked, masked, audited), as :func:`citytwin.workflows.economy.read_table`
    reads it. Returns the frame and the dataset name."""
    from citytwin.workflows.economy import read_table

    ws = None
    if not Path(source).exists() and workspace is not None:
        from citytwin.foundation.workspace import Workspace

        ws = Workspace.open(workspace, user=user)
    return read_table(source, ws, sheet)


def parse_list(value: str | Sequence[str] | None) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]`` (empty items dropped)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [i.strip() for i in items if i.strip()]


def parse_window(value: str | None, periods: pd.Series, *, option: str = "--shock") -> tuple[Any, Any] | None:
    """``"START:END"`` -> a pair of periods of the same type as ``periods`` (``None`` passes through)."""
    if value is None or value == "":
        return None
    parts = value.split(":")
    if len(parts) != 2 or not all(parts):
        raise InputError(f"bad {option} {value!r}", hint=f"use {option} START:END, e.g. 2008:2009")
    if pd.api.types.is_numeric_dtype(periods):
        try:
            return int(parts[0]), int(parts[1])
        except ValueError:
            raise InputError(f"bad {option} {value!r}: the periods are numbers", hint="e.g. 2008:2009") from None
    return parts[0], parts[1]


def _base_name(panel: str, dataset: str | None, command: str) -> str:
    """``<panel>_<command>`` as a valid dataset name (the dataset name, else the file stem, cleaned)."""
    base = dataset or Path(panel).stem
    base = re.sub(r"[^a-z0-9_]+", "_", base.lower()).strip("_") or "panel"
    if not base[0].isalpha():
        base = f"p_{base}"
    return f"{base[: 63 - len(command) - 12]}_{command}"


def _store(command: str, frames: dict[str, pd.DataFrame], *, panel: str, dataset: str | None,
           workspace: str | Path | None, user: str | None, store: str | None, save: bool,
           params: dict[str, Any], extra_inputs: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Store ``frames`` (suffix -> table; ``""`` is the main one) as derived datasets when a workspace is
    given; returns ``[{"dataset", "version"}, ...]`` (empty without a workspace or with ``save=False``)."""
    if workspace is None or not save:
        return []
    from citytwin.foundation.catalog import check_name
    from citytwin.workflows.common import open_ws
    from citytwin.workflows.spatial import Inputs, store_results

    name = check_name(store) if store else _base_name(panel, dataset, command)
    files: dict[str, str] = {}
    p = Path(panel)
    if dataset is None and p.is_file():
        files = {"panel": str(p.resolve()), "panel_sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
    inp = Inputs(datasets=[d for d in (dataset, *extra_inputs) if d], files=files)
    ws = open_ws(workspace, user)
    stored = store_results(ws, name, {k: v.reset_index(drop=True) for k, v in frames.items()}, inp,
                           {"command": f"resilience {command}", **params},
                           f"citytwin resilience {command} on {dataset or p.name}")
    return [{"dataset": d, "version": v} for d, v in stored]


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2, default=str), encoding="utf-8")


def _model_json(r: PanelResult) -> dict[str, Any]:
    i = r.info
    return {"N": r.nobs, "N_input": i.get("N_input"), "r2": i.get("r2"), "r2_within": i.get("r2_within"),
            "n_clusters": i.get("clusters"), "dropped_singletons": i.get("dropped_singletons"),
            "dropped_missing": i.get("dropped_missing"), "dropped_rows": i.get("dropped_rows"),
            "dropped_missing_by_column": i.get("dropped_missing_by_column"), "fe": i.get("fe"),
            "vcov": i.get("vcov"), "cluster": i.get("cluster"), "ssc": i.get("ssc"), "y": i.get("y"),
            "x": i.get("x"), "controls": i.get("controls"), "units": i.get("units"), "periods": i.get("periods"),
            "balanced": i.get("balanced"), "units_with_gaps": i.get("units_with_gaps"),
            "warnings": i.get("warnings", [])}


def _clusters(cluster: str | Sequence[str] | None) -> str | list[str] | None:
    cl = parse_list(cluster)
    return cl if len(cl) > 1 else (cl[0] if cl else None)


def _fe_ids(fe: list[str]) -> tuple[str | None, str | None]:
    return (fe[0] if fe else None), (fe[1] if len(fe) > 1 else None)


def measure(panel: str, *, unit: str, time: str, value: str, out: str | Path, reference: str = "national",
            shock: str | None = None, recovery_end: str | None = None, method: str = "martin",
            store: str | None = None, save: bool = True, workspace: str | Path | None = None,
            user: str | None = None, sheet: str | None = None) -> dict[str, Any]:
    """Resilience measures of every unit -> ``out/resilience.csv`` and ``out/measure.json``."""
    from citytwin.resilience.measures import resilience_measures

    frame, dataset = read_panel(panel, workspace=workspace, user=user, sheet=sheet)
    if time not in frame.columns:
        raise InputError(f"the panel has no column {time!r}", file=panel, field=time)
    window = parse_window(shock, frame[time])
    rec = None
    if recovery_end:
        pair = parse_window(f"0:{recovery_end}", frame[time], option="--recovery-end")
        rec = pair[1] if pair else None
    r = resilience_measures(frame, unit=unit, time=time, value=value, reference=reference, shock=window,
                            recovery_end=rec, method=method, source=panel)
    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    table = r.table.rename(columns={unit: "unit"})
    table.to_csv(o / "resilience.csv", index=False)
    stored = _store("resilience", {"": table}, panel=panel, dataset=dataset, workspace=workspace, user=user,
                    store=store, save=save, params={"unit": unit, "time": time, "value": value,
                                                    "reference": reference, "shock": list(r.shock),
                                                    "shock_rule": r.shock_rule, "method": r.method})
    summary = {"method": r.method, "shock": list(r.shock), "shock_rule": r.shock_rule, "reference": reference,
               "reference_series": {str(k): float(v) for k, v in r.reference.items()}, "rows": len(r.table),
               "warnings": r.warnings, "files": ["resilience.csv", "measure.json"], "out": str(o), "stored": stored}
    _write_json(o / "measure.json", summary)
    return summary


def model(panel: str, *, y: str, x: str, out: str | Path, controls: str | Sequence[str] | None = None,
          fe: str | Sequence[str] | None = None, cluster: str | Sequence[str] | None = None, vcov: str = "cluster",
          store: str | None = None, save: bool = True, workspace: str | Path | None = None,
          user: str | None = None, sheet: str | None = None) -> dict[str, Any]:
    """Two-way FE model -> ``out/coefficients.csv`` and ``out/model.json``."""
    from citytwin.resilience.panel import fit_fe

    frame, dataset = read_panel(panel, workspace=workspace, user=user, sheet=sheet)
    fes = parse_list(fe)
    unit, time = _fe_ids(fes)
    r = fit_fe(frame, y, parse_list(x), controls=parse_list(controls), fe=fes,
               cluster=_clusters(cluster), vcov=vcov,
               unit=unit, time=time, source=panel)
    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    r.coefficients.to_csv(o / "coefficients.csv", index=False)
    mj = _model_json(r)
    mj["stored"] = _store("model", {"": r.coefficients}, panel=panel, dataset=dataset, workspace=workspace,
                          user=user, store=store, save=save, params=mj)
    _write_json(o / "model.json", mj)
    return mj | {"coefficients": r.coefficients.to_dict(orient="records"), "out": str(o),
                 "files": ["coefficients.csv", "model.json"]}


def mechanism(panel: str, *, y: str, x: str, m: str, out: str | Path, controls: str | Sequence[str] | None = None,
              fe: str | Sequence[str] | None = None, cluster: str | Sequence[str] | None = None, vcov: str = "cluster",
              n_boot: int = 500, seed: int = 0, store: str | None = None, save: bool = True,
              workspace: str | Path | None = None, user: str | None = None,
              sheet: str | None = None) -> dict[str, Any]:
    """Mechanism test -> ``out/mechanism.csv``, ``out/steps.csv``, ``out/mechanism.json``."""
    from citytwin.resilience.mechanism import stepwise

    frame, dataset = read_panel(panel, workspace=workspace, user=user, sheet=sheet)
    fes = parse_list(fe)
    unit, time = _fe_ids(fes)
    r = stepwise(frame, y=y, x=x, m=m, controls=parse_list(controls), fe=fes,
               cluster=_clusters(cluster), vcov=vcov,
                 unit=unit, time=time, n_boot=n_boot, seed=seed, source=panel)
    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    summ = r.summary()
    summ.to_csv(o / "mechanism.csv", index=False)
    steps = pd.concat([s.coefficients.assign(step=k) for k, s in r.steps.items()], ignore_index=True)
    steps.to_csv(o / "steps.csv", index=False)
    s = r.sobel
    js = {"N": r.info["N"], "dropped_missing": r.info["dropped_missing"], "indirect": s.indirect,
          "sobel": {"z": s.z_sobel, "p": s.p_sobel}, "aroian": {"z": s.z_aroian, "p": s.p_aroian},
          "goodman": {"z": s.z_goodman, "p": s.p_goodman}, "bootstrap": r.bootstrap,
          "proportion_mediated": r.info["proportion_mediated"],
          "models": {k: _model_json(v) for k, v in r.steps.items()}}
    js["stored"] = _store("mechanism", {"": summ, "steps": steps}, panel=panel, dataset=dataset,
                          workspace=workspace, user=user, store=store, save=save,
                          params={"y": y, "x": x, "m": m, "fe": fes, "vcov": vcov, "n_boot": n_boot, "seed": seed,
                                  "controls": parse_list(controls), "N": r.info["N"]})
    _write_json(o / "mechanism.json", js)
    return js | {"summary": summ.to_dict(orient="records"), "out": str(o)}


def heterogeneity(panel: str, *, group: str, y: str, x: str, out: str | Path,
                  controls: str | Sequence[str] | None = None, fe: str | Sequence[str] | None = None,
                  cluster: str | Sequence[str] | None = None, vcov: str = "cluster", n_perm: int = 0, seed: int = 0,
                  store: str | None = None, save: bool = True, workspace: str | Path | None = None,
                  user: str | None = None,
                  sheet: str | None = None) -> dict[str, Any]:
    """Heterogeneity by a group column -> ``out/groups.csv``, ``out/pairs.csv``, ``out/heterogeneity.json``."""
    from citytwin.resilience.heterogeneity import by_group

    frame, dataset = read_panel(panel, workspace=workspace, user=user, sheet=sheet)
    fes = parse_list(fe)
    unit, time = _fe_ids(fes)
    r = by_group(frame, group=group, y=y, x=x, controls=parse_list(controls), fe=fes,
               cluster=_clusters(cluster), vcov=vcov,
                 unit=unit, time=time, n_perm=n_perm, seed=seed, source=panel)
    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    r.table.to_csv(o / "groups.csv", index=False)
    r.pairs.to_csv(o / "pairs.csv", index=False)
    js = {"group": group, "groups": r.table.to_dict(orient="records"), "wald": r.wald,
          "pairs": r.pairs.to_dict(orient="records"), "dropped_no_group": r.info["dropped_no_group"],
          "n_perm": n_perm, "seed": seed, "interaction_model": _model_json(r.interaction)}
    js["stored"] = _store("heterogeneity", {"groups": r.table, "pairs": r.pairs}, panel=panel, dataset=dataset,
                          workspace=workspace, user=user, store=store, save=save,
                          params={"group": group, "y": y, "x": x, "fe": fes, "vcov": vcov, "n_perm": n_perm,
                                  "seed": seed, "controls": parse_list(controls), "wald": r.wald})
    _write_json(o / "heterogeneity.json", js)
    return js | {"out": str(o)}


def report(panel: str, *, y: str, x: str, out: str | Path, controls: str | Sequence[str] | None = None,
           fe: str | Sequence[str] | None = None, cluster: str | Sequence[str] | None = None, vcov: str = "cluster",
           m: str | None = None, title: str = "Regression results", workspace: str | Path | None = None,
           user: str | None = None, sheet: str | None = None) -> dict[str, Any]:
    """Paper table: (1) Y on X, (2) with controls, and with ``m`` (3) M on X and (4) Y on X and M; as
    ``table.html``, ``table.tex``, ``table.docx`` and ``coefficients.png``."""
    from citytwin.resilience.panel import fit_fe
    from citytwin.resilience.tables import coef_plot, regression_table

    frame, _ = read_panel(panel, workspace=workspace, user=user, sheet=sheet)
    fes = parse_list(fe)
    unit, time = _fe_ids(fes)
    ctrl = parse_list(controls)
    xs = parse_list(x)
    kw: dict[str, Any] = {"fe": fes, "cluster": _clusters(cluster), "vcov": vcov, "unit": unit, "time": time,
                          "source": panel}
    models, names = [fit_fe(frame, y, xs, **kw)], [y]
    if ctrl:
        models.append(fit_fe(frame, y, xs, controls=ctrl, **kw))
        names.append(y)
    if m:
        models.append(fit_fe(frame, m, xs, controls=ctrl, **kw))
        models.append(fit_fe(frame, y, [*xs, m], controls=ctrl, **kw))
        names += [m, y]
    t = regression_table(models, names=[f"({i + 1}) {n}" for i, n in enumerate(names)],
                         terms=[*xs, *([m] if m else []), *ctrl], title=title)
    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    (o / "table.html").write_text(t.to_html(), encoding="utf-8")
    (o / "table.tex").write_text(t.to_latex(), encoding="utf-8")
    t.to_docx(o / "table.docx")
    coef_plot(models, o / "coefficients.png", terms=[*xs, *([m] if m else [])],
              names=[f"({i + 1}) {n}" for i, n in enumerate(names)])
    js = {"models": [_model_json(r) for r in models], "files": ["table.html", "table.tex", "table.docx",
                                                                "coefficients.png", "report.json"], "out": str(o)}
    _write_json(o / "report.json", js)
    return js


def threshold(panel: str, *, y: str, x: str, q: str, fe: str | Sequence[str], out: str | Path,
              controls: str | Sequence[str] | None = None, n_thresholds: int = 1, trim: float = 0.05,
              n_grid: int = 100, bootstrap: int = 300, seed: int = 0, two_way: bool = False,
              store: str | None = None, save: bool = True, workspace: str | Path | None = None,
              user: str | None = None, sheet: str | None = None) -> dict[str, Any]:
    """Hansen (1999) panel threshold model -> ``out/coefficients.csv``, ``out/threshold.json`` and
    ``out/lr.csv`` (the likelihood-ratio curve over the grid; see :func:`citytwin.resilience.threshold.
    threshold_grid` for the grid rule)."""
    from citytwin.resilience.threshold import panel_threshold

    if n_thresholds not in (1, 2):
        raise InputError(f"--thresholds must be 1 or 2, got {n_thresholds}", field="thresholds")
    frame, dataset = read_panel(panel, workspace=workspace, user=user, sheet=sheet)
    unit, time = _fe_ids(parse_list(fe))
    if unit is None or time is None:
        raise InputError("--fe needs UNIT,TIME", field="fe")
    try:
        r = panel_threshold(frame, y, parse_list(x), q, unit, time, parse_list(controls),
                            n_thresholds=1 if n_thresholds == 1 else 2, trim=trim, n_grid=n_grid,
                            bootstrap=bootstrap, seed=seed, fe="two-way" if two_way else "unit")
    except InputError as exc:
        if exc.file is not None:
            raise
        raise InputError(exc.message, file=panel, hint=exc.hint) from exc  # the panel named as well
    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    r.result.coefficients.to_csv(o / "coefficients.csv", index=False)
    r.lr.to_csv(o / "lr.csv", index=False)
    summary = {"thresholds": [float(g) for g in r.thresholds], "ci": [list(map(float, c)) for c in r.ci],
               "f_stats": [float(f) for f in r.f_stats],
               "p_values": [None if p is None else float(p) for p in r.p_values], "crit": r.crit,
               "grid_rule": {"trim": trim, "n_grid": n_grid, "candidates": len(r.grid)},
               "bootstrap": bootstrap, "seed": seed, "N": r.result.nobs, "info": r.info,
               "coefficients": r.result.coefficients.to_dict(orient="records"),
               "files": ["coefficients.csv", "threshold.json", "lr.csv"], "out": str(o)}
    summary["stored"] = _store("threshold", {"": r.result.coefficients, "lr": r.lr}, panel=panel, dataset=dataset,
                               workspace=workspace, user=user, store=store, save=save,
                               params={k: v for k, v in summary.items() if k not in ("coefficients", "out")})
    _write_json(o / "threshold.json", summary)
    return summary


def spatial(panel: str, *, y: str, x: str, fe: str | Sequence[str], out: str | Path, boundaries: str,
            id_col: str, weights: str = "queen", model: str = "sar", two_way: bool = True,
            economic: str | None = None, draws: int = 1000, seed: int = 0,
            store: str | None = None, save: bool = True, workspace: str | Path | None = None,
            user: str | None = None, sheet: str | None = None) -> dict[str, Any]:
    """Spatial lag (SAR) or Durbin (SDM) panel with fixed effects and LeSage–Pace impacts ->
    ``out/coefficients.csv``, ``out/impacts.csv`` and ``out/spatial.json``.

    ``boundaries`` is a GIS file or a catalog dataset with one polygon per unit (``id_col`` holds the
    panel's unit ids); ``weights`` is ``queen``, ``inverse_distance`` or ``economic`` (the latter from
    the unit means of the panel column ``economic``).
    """
    import geopandas as gpd

    from citytwin.resilience.spatial import spatial_panel, weights_from_boundaries

    if weights not in ("queen", "inverse_distance", "economic"):
        raise InputError(f"unknown weights {weights!r}", field="weights",
                         hint="use queen, inverse_distance or economic")
    if model not in ("sar", "sdm"):
        raise InputError(f"unknown model {model!r}", field="model", hint="use sar or sdm")
    frame, dataset = read_panel(panel, workspace=workspace, user=user, sheet=sheet)
    unit, time = _fe_ids(parse_list(fe))
    if unit is None or time is None:
        raise InputError("--fe needs UNIT,TIME", field="fe")
    bp = Path(boundaries)
    bds = None
    if bp.exists():
        try:
            gdf = gpd.read_file(bp)
        except Exception as exc:  # pyogrio raises several types for unreadable files
            raise InputError(f"cannot read boundaries {bp}: {exc}", file=str(bp)) from exc
    else:
        bframe, bds = read_panel(boundaries, workspace=workspace, user=user)
        if not isinstance(bframe, gpd.GeoDataFrame):
            raise InputError(f"dataset {boundaries!r} has no geometry", field="boundaries")
        gdf = bframe
    if id_col not in gdf.columns:
        raise InputError(f"the boundaries have no column {id_col!r}", file=boundaries, field=id_col)
    gdf = gdf[gdf[id_col].isin(set(frame[unit]))].copy()
    values = None
    if weights == "economic":
        if not economic or economic not in frame.columns:
            raise InputError("economic weights need --economic COLUMN of the panel", field="economic")
        values = frame.groupby(unit)[economic].mean()
    w = weights_from_boundaries(gdf, id_col, weights, values=values)  # type: ignore[arg-type]
    r = spatial_panel(frame, y, parse_list(x), unit, time, w, model=model,  # type: ignore[arg-type]
                      fe="two-way" if two_way else "unit", draws=draws, seed=seed)
    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    r.result.coefficients.to_csv(o / "coefficients.csv", index=False)
    r.impacts.to_csv(o / "impacts.csv", index=False)
    summary = {"model": model, "weights": weights, "rho": float(r.rho), "N": r.result.nobs,
               "info": {**r.result.info, **r.info}, "coefficients": r.result.coefficients.to_dict(orient="records"),
               "impacts": r.impacts.to_dict(orient="records"),
               "files": ["coefficients.csv", "impacts.csv", "spatial.json"], "out": str(o)}
    summary["stored"] = _store("spatial", {"": r.result.coefficients, "impacts": r.impacts}, panel=panel,
                               dataset=dataset, workspace=workspace, user=user, store=store, save=save,
                               params={"y": y, "x": x, "fe": parse_list(fe), "model": model, "weights": weights,
                                       "boundaries": boundaries, "rho": float(r.rho), "draws": draws, "seed": seed,
                                       "two_way": two_way}, extra_inputs=[bds] if bds else [])
    _write_json(o / "spatial.json", summary)
    return summary
