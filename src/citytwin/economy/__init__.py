"""citytwin.economy: digital-economy evaluation (B1-B4), pure functions over DataFrames.

Modules: ``spec`` (index specification), ``weights`` (entropy, CRITIC, TOPSIS, PCA), ``index``
(composite index), ``ranking`` (ranks and tiers), ``groups`` (regions and city clusters),
``inequality`` (Gini, Theil), ``dagum`` (Dagum decomposition), ``autocorr`` (Moran, LISA, Getis-Ord),
``dynamics`` (kernel density, convergence, Markov chains), ``openness`` (open-data scores),
``report`` (HTML). See docs/economy.md and docs/economy_disparity.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from citytwin import lazy_exports

#: submodule -> the public names it defines (imported on first use: see :func:`citytwin.lazy_exports`)
_EXPORTS: dict[str, tuple[str, ...]] = {
    "spec": ("Indicator", "IndexSpec", "Prepared", "parse_spec", "prepare"),
    "weights": ("CriticResult", "EntropyResult", "PCAResult", "TopsisResult", "combine_weights",
                 "critic_weights", "entropy_weights", "pca_weights", "topsis"),
    "index": ("IndexResult", "composite_index"),
    "ranking": ("ThresholdTable", "assign_tiers", "rank_by", "rank_gap"),
    "groups": ("Assignment", "MembershipTable", "assign_groups", "group_scores", "membership_table"),
    "inequality": ("TheilResult", "gini", "theil", "theil_by_year"),
    "dagum": ("DagumResult", "dagum_by_year", "dagum_gini"),
    "autocorr": ("MoranResult", "getis_ord", "local_moran", "moran", "spatial_weights"),
    "dynamics": ("BetaResult", "KernelDensityResult", "MarkovResult", "SpatialMarkovResult",
                 "beta_convergence", "kernel_density", "markov", "sigma_convergence", "spatial_markov",
                 "steady_state"),
    "openness": ("OpennessProfile", "catalog_profile", "score_profiles"),
    "report": ("render_report",),
}

__all__ = ["Assignment", "BetaResult", "CriticResult", "DagumResult", "EntropyResult", "IndexResult",
           "IndexSpec", "Indicator", "KernelDensityResult", "MarkovResult", "MembershipTable",
           "MoranResult", "OpennessProfile", "PCAResult", "Prepared", "SpatialMarkovResult", "TheilResult",
           "ThresholdTable", "TopsisResult", "assign_groups", "assign_tiers", "beta_convergence",
           "catalog_profile", "combine_weights", "composite_index", "critic_weights", "dagum_by_year",
           "dagum_gini", "entropy_weights", "getis_ord", "gini", "group_scores", "kernel_density",
           "local_moran", "markov", "membership_table", "moran", "parse_spec", "pca_weights", "prepare",
           "rank_by", "rank_gap", "render_report", "score_profiles", "sigma_convergence", "spatial_markov",
           "spatial_weights", "steady_state", "theil", "theil_by_year", "topsis"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from citytwin.economy.autocorr import MoranResult, getis_ord, local_moran, moran, spatial_weights
    from citytwin.economy.dagum import DagumResult, dagum_by_year, dagum_gini
    from citytwin.economy.dynamics import (
        BetaResult,
        KernelDensityResult,
        MarkovResult,
        SpatialMarkovResult,
        beta_convergence,
        kernel_density,
        markov,
        sigma_convergence,
        spatial_markov,
        steady_state,
    )
    from citytwin.economy.groups import (
        Assignment,
        MembershipTable,
        assign_groups,
        group_scores,
        membership_table,
    )
    from citytwin.economy.index import IndexResult, composite_index
    from citytwin.economy.inequality import TheilResult, gini, theil, theil_by_year
    from citytwin.economy.openness import OpennessProfile, catalog_profile, score_profiles
    from citytwin.economy.ranking import ThresholdTable, assign_tiers, rank_by, rank_gap
    from citytwin.economy.report import render_report
    from citytwin.economy.spec import IndexSpec, Indicator, Prepared, parse_spec, prepare
    from citytwin.economy.weights import (
        CriticResult,
        EntropyResult,
        PCAResult,
        TopsisResult,
        combine_weights,
        critic_weights,
        entropy_weights,
        pca_weights,
        topsis,
    )
