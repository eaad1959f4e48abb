"""Economic resilience and panel models (issue 15: C1–C3).

Advanced models live in :mod:`citytwin.resilience.threshold` (Hansen 1999 panel threshold),
:mod:`citytwin.resilience.spatial` (SAR/SDM panels with two-way fixed effects, LeSage–Pace
impacts, weights from boundaries) and :mod:`citytwin.resilience.iv` (lags by unit, 2SLS).
Pure functions over DataFrames; no I/O (docs/architecture.md).
"""
