"""Small result object shared by the panel models of :mod:`citytwin.resilience`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["COEF_COLUMNS", "PanelResult"]

COEF_COLUMNS = ["term", "estimate", "std_error", "t", "p"]


@dataclass
class PanelResult:
    """Estimates of one panel model.

    Attributes
    ----------
    coefficients
        One row per term, columns ``term, estimate, std_error, t, p``.
    nobs
        Number of observations used.
    info
        Model facts (method, fixed effects, dropped rows, diagnostics), JSON-serialisable.
    """

    coefficients: pd.DataFrame
    nobs: int
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in COEF_COLUMNS if c not in self.coefficients.columns]
        if missing:
            raise ValueError(f"coefficients lack columns {missing}")
