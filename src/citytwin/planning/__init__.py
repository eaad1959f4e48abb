"""citytwin.planning: planning and renewal decision support (E1–E5), pure functions, no I/O.

Modules: ``overlay`` (E4 plan conflicts by rules, equal-area areas), ``change`` (E5 land change,
transition matrix, rates, hot spots, rule violations), ``reserve`` (E1 population forecasts incl.
GM(1,1), land demand per GB 50137-2011, reserve per planning year, zoning), ``renewal`` (E2 site
ranking with reasons and rank sensitivity), ``lifecycle`` (E3 stages and transitions,
difference-in-differences outcomes). Project records are in :mod:`citytwin.foundation.projects`,
the pipelines in :mod:`citytwin.workflows.planning`. See docs/planning.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from citytwin import lazy_exports

#: submodule -> the public names it defines (imported on first use: see :func:`citytwin.lazy_exports`)
_EXPORTS: dict[str, tuple[str, ...]] = {
    "overlay": ("ConflictResult", "Rule", "check_layer", "equal_area_crs", "find_conflicts", "parse_rules"),
    "change": ("ChangeResult", "change_hotspots", "flag_changes", "land_change"),
    "reserve": ("GreyModel", "ReserveParams", "ReserveResult", "ZoningResult", "forecast_population", "gm11",
                "reserve_land", "zone_reserve"),
    "renewal": ("RankingResult", "rank_sensitivity", "rank_sites"),
    "lifecycle": ("STAGES", "DidResult", "TransitionError", "check_transition", "did"),
}

__all__ = ["STAGES", "ChangeResult", "ConflictResult", "DidResult", "GreyModel", "RankingResult", "ReserveParams",
           "ReserveResult", "Rule", "TransitionError", "ZoningResult", "change_hotspots", "check_layer",
           "check_transition", "did", "equal_area_crs", "find_conflicts", "flag_changes", "forecast_population",
           "gm11", "land_change", "parse_rules", "rank_sensitivity", "rank_sites", "reserve_land", "zone_reserve"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from citytwin.planning.change import ChangeResult, change_hotspots, flag_changes, land_change
    from citytwin.planning.lifecycle import STAGES, DidResult, TransitionError, check_transition, did
    from citytwin.planning.overlay import (
        ConflictResult,
        Rule,
        check_layer,
        equal_area_crs,
        find_conflicts,
        parse_rules,
    )
    from citytwin.planning.renewal import RankingResult, rank_sensitivity, rank_sites
    from citytwin.planning.reserve import (
        GreyModel,
        ReserveParams,
        ReserveResult,
        ZoningResult,
        forecast_population,
        gm11,
        reserve_land,
        zone_reserve,
    )
