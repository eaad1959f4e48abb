"""The result shape shared by every estimator of :mod:`citytwin.resilience`.

Following linearmodels' split between model, results and covariance: estimators (``panel``,
``mechanism``, ``heterogeneity``, ``threshold``, ``spatial``, ``iv``) return a :class:`PanelResult`
holding the coefficient table, the number of observations used and a JSON-serialisable ``info``
dictionary (N, R², clusters, dropped singletons, dropped rows, covariance type, small-sample
corrections ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

COEF_COLUMNS: tuple[str, ...] = ("term", "estimate", "std_error", "t", "p")


def coef_frame(terms: list[str], estimate: Any, std_error: Any, t: Any, p: Any) -> pd.DataFrame:
    """A coefficient table with the columns :data:`COEF_COLUMNS`."""
    return pd.DataFrame({"term": list(terms), "estimate": np.asarray(estimate, dtype=float),
                         "std_error": np.asarray(std_error, dtype=float), "t": np.asarray(t, dtype=float),
                         "p": np.asarray(p, dtype=float)})


@dataclass
class PanelResult:
    """An estimated model.

    Attributes
    ----------
    coefficients
        One row per term: ``term, estimate, std_error, t, p``.
    nobs
        Observations used in the estimation (after dropped rows and singletons).
    info
        JSON-serialisable facts about the fit: ``N``, ``r2``, ``r2_within``, ``clusters`` (count per
        cluster variable), ``dropped_singletons``, ``dropped_missing``, ``fe``, ``vcov``, ``ssc`` ...
    vcov
        Covariance matrix of the estimates (terms × terms), when available.
    model
        A short name of the estimator (e.g. ``"twoway_fe"``).
    """

    coefficients: pd.DataFrame
    nobs: int
    info: dict[str, Any] = field(default_factory=dict)
    vcov: pd.DataFrame | None = None
    model: str = ""

    def __post_init__(self) -> None:
        missing = [c for c in COEF_COLUMNS if c not in self.coefficients.columns]
        if missing:
            raise ValueError(f"coefficients lack columns {missing}")

    def row(self, term: str) -> pd.Series:
        """The coefficient row of ``term`` (KeyError naming the terms if absent)."""
        hit = self.coefficients[self.coefficients["term"] == term]
        if hit.empty:
            raise KeyError(f"no term {term!r}; terms: {list(self.coefficients['term'])}")
        return hit.iloc[0]

    def estimate(self, term: str) -> float:
        """The estimate of ``term``."""
        return float(self.row(term)["estimate"])

    def std_error(self, term: str) -> float:
        """The standard error of ``term``."""
        return float(self.row(term)["std_error"])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (coefficients as records, info)."""
        return {"model": self.model, "nobs": self.nobs, "info": self.info,
                "coefficients": self.coefficients.to_dict(orient="records")}
