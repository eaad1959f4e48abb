"""Economic resilience and panel models (C1–C3).

Pure functions and small result dataclasses over DataFrames, no I/O (docs/architecture.md):

- :mod:`~citytwin.resilience.measures`: Martin (2012) sensitivity, resistance and recovery against a
  reference economy (Martin, Sunley, Gardiner & Tyler 2016), the growth-deviation form, the
  multi-dimensional index built with :mod:`citytwin.economy.index`;
- :mod:`~citytwin.resilience.panel`: two-way fixed effects (wrapping pyfixest) with clustered,
  two-way clustered and Driscoll–Kraay errors, singletons dropped and counted;
- :mod:`~citytwin.resilience.mechanism`: stepwise (Baron–Kenny) with Sobel and bootstrap tests, the
  simple X→M form, causal mediation (wrapping statsmodels);
- :mod:`~citytwin.resilience.heterogeneity`: group regressions and tests of coefficient differences;
- :mod:`~citytwin.resilience.tables`: regression tables (HTML, LaTeX, Word) and coefficient plots;
- :mod:`~citytwin.resilience.threshold`: Hansen (1999) panel threshold, single and double, with the
  grid rule stated and bootstrap p-values;
- :mod:`~citytwin.resilience.spatial`: SAR/SDM panels with two-way fixed effects, LeSage–Pace
  direct/indirect/total impacts, weights from boundaries (contiguity, inverse and economic distance);
- :mod:`~citytwin.resilience.iv`: lags by unit (gaps respected) and 2SLS with first-stage diagnostics.

Every estimator returns a :class:`~citytwin.resilience.results.PanelResult`.
"""

from citytwin.resilience.results import PanelResult

__all__ = ["PanelResult"]
