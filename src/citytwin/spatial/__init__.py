"""citytwin.spatial: urban spatial structure (D1-D6), pure functions over GeoDataFrames.

Modules: ``network`` (street graph, snapping, components, OSMnx-style statistics), ``lifecircle``
(D5), ``mix`` (D3), ``grid`` (H3), ``centers`` and ``polycentricity`` (D1), ``compare`` (D2/D4),
``jobs_housing`` (D6), ``report`` (HTML with maps). See docs/spatial.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from citytwin import lazy_exports

#: submodule -> the public names it defines (imported on first use: see :func:`citytwin.lazy_exports`)
_EXPORTS: dict[str, tuple[str, ...]] = {
    "network": ("StreetNetwork", "build_network", "network_stats"),
    "lifecircle": ("LifeCircleResult", "life_circle"),
    "mix": ("functional_mix",),
    "grid": ("cells_frame", "point_cells"),
    "centers": ("CentersResult", "activity_grid", "detect_centers", "find_centers"),
    "polycentricity": ("RankSize", "UCIResult", "rank_size", "urban_centrality_index"),
    "compare": ("SnapshotComparison", "compare_snapshots", "innovation_districts"),
    "jobs_housing": ("JobsHousingResult",),
    "report": ("render_html",),
}

__all__ = ["CentersResult", "JobsHousingResult", "LifeCircleResult", "RankSize", "SnapshotComparison",
           "StreetNetwork", "UCIResult", "activity_grid", "build_network", "cells_frame",
           "compare_snapshots", "detect_centers", "find_centers", "functional_mix", "innovation_districts",
           "life_circle", "network_stats", "point_cells", "rank_size", "render_html",
           "urban_centrality_index"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from citytwin.spatial.centers import CentersResult, activity_grid, detect_centers, find_centers
    from citytwin.spatial.compare import SnapshotComparison, compare_snapshots, innovation_districts
    from citytwin.spatial.grid import cells_frame, point_cells
    from citytwin.spatial.jobs_housing import JobsHousingResult
    from citytwin.spatial.lifecircle import LifeCircleResult, life_circle
    from citytwin.spatial.mix import functional_mix
    from citytwin.spatial.network import StreetNetwork, build_network, network_stats
    from citytwin.spatial.polycentricity import RankSize, UCIResult, rank_size, urban_centrality_index
    from citytwin.spatial.report import render_html
