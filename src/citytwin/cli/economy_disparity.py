"""`citytwin economy disparity ...` (registered on the economy app).

A thin command over :func:`citytwin.workflows.disparity.run_disparity` (the pipeline: Gini/Theil,
Dagum, σ/β-convergence, kernel density, Markov chains and, with boundaries, Moran's I, LISA,
Getis-Ord and spatial Markov by period; CSVs and ``options.json`` written to ``--out``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from citytwin.cli.common import DaskOpt, JsonOpt, WorkspaceOpt, console, handle_errors, print_json, progress


def disparity(
    panel: Annotated[str, typer.Argument(help="Long panel: a file (CSV/XLSX/Parquet) or a catalog dataset name.")],
    value: Annotated[str, typer.Option("--value", help="Column with the measured value (e.g. GDP per capita).")],
    group: Annotated[str, typer.Option("--group", help="Column with the group (region) of each unit.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the CSVs and options.json to.")],
    time: Annotated[str | None, typer.Option("--time", help="Period column (omit for one cross-section).")] = None,
    weight: Annotated[str | None, typer.Option("--weight", help="Population weight column (weighted Gini/Theil/Dagum).")] = None,
    boundaries: Annotated[str | None, typer.Option("--boundaries", help="Boundary polygons (file or dataset) for Moran's I.")] = None,
    id_col: Annotated[str | None, typer.Option("--id-col", help="Unit id column in the panel (and in the boundaries).")] = None,
    boundary_id: Annotated[str | None, typer.Option("--boundary-id", help="Unit id column in the boundaries if named differently.")] = None,
    weights: Annotated[str, typer.Option("--weights", help="queen, rook, knn or distance.")] = "queen",
    k: Annotated[int, typer.Option("--k", help="Neighbours for knn weights.")] = 6,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Distance band (metres for lon/lat data).")] = None,
    islands: Annotated[str, typer.Option("--islands", help="Units without neighbours: nearest, keep or raise.")] = "nearest",
    permutations: Annotated[int, typer.Option("--permutations", help="Permutations for pseudo p-values.")] = 999,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 12345,
    sheet: Annotated[str | None, typer.Option("--sheet", help="Sheet of an Excel PANEL (default: the first).")] = None,
    save_as: Annotated[str | None, typer.Option("--save-as", help="Also store the tables as catalog datasets PREFIX_<table> (needs --workspace).")] = None,
    workspace: WorkspaceOpt = None,
    dask: DaskOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Disparity decompositions by period: Gini, Theil (between/within), Dagum, σ, and Moran's I.

    With --dask, Gini, Theil and Dagum run one task per period on Dask (a Parquet panel), with the same
    tables. Example: citytwin economy disparity panel.csv --value gdp_pc --group region --time year
    --boundaries cities.geojson --id-col adcode --out out/disparity
    """
    from citytwin.workflows.disparity import run_disparity

    with progress("Moran's I by period") as advance:
        res = run_disparity(panel, value=value, group=group, out=out, time=time, weight=weight,
                            boundaries=boundaries, id_col=id_col, boundary_id=boundary_id, weights=weights, k=k,
                            threshold=threshold, islands=islands, permutations=permutations, seed=seed,
                            sheet=sheet, save_as=save_as, workspace=workspace,
                            on_period=lambda done, total: advance(1, total=total), dask=dask)
    if as_json:
        print_json({"out": str(out), "files": res.files, "summary": res.summary.to_dict("records"),
                    "rows_dropped": res.rows_dropped, "datasets": res.datasets, "options": res.options})
        return
    if res.datasets:
        console.print(f"stored {len(res.datasets)} datasets as [bold]{save_as}_*[/] in the catalog")
    last = res.summary.iloc[-1]
    console.print(f"[bold]{len(res.summary)}[/] period(s); last: Gini {last['g']:.4f} = within {last['g_w']:.4f}"
                  f" + net between {last['g_nb']:.4f} + transvariation {last['g_t']:.4f}")
    if res.rows_dropped:
        console.print(f"[yellow]{res.rows_dropped} row(s) with a missing value dropped[/]")
    console.print(f"wrote {len(res.files)} files to [bold]{out}[/]")


def register(app: typer.Typer) -> None:
    """Add the disparity commands to the economy app."""
    app.command("disparity")(handle_errors(disparity))

