"""Mechanism (mediation) tests (C2).

Three forms, side by side:

- :func:`stepwise`: the Baron–Kenny steps with the panel estimator of :mod:`.panel` (same fixed
  effects, controls and clustering in every step, on one common sample): total effect ``c``
  (Y on X), ``a`` (M on X), ``b`` and the direct effect ``c'`` (Y on X and M). The indirect effect
  ``a·b`` is tested with the Sobel, Aroian and Goodman z statistics (:func:`sobel`) and with a
  percentile bootstrap that resamples units (clusters) with replacement (seeded).
- the simple X→M form that seed 002 uses (only ``a``, M on X): reported in the same result
  (``MechanismResult.simple``), so that a reader sees whether the steps that form leaves out hold.
- :func:`causal_mediation`: ACME / ADE / total effect (Imai, Keele & Tingley 2010), a thin wrapper
  of ``statsmodels.stats.mediation.Mediation`` (checked against the R ``mediation`` vignette numbers
  in tests/resilience/test_mechanism.py).

Examples
--------
>>> s = sobel(2.0, 0.3, 3.0, 0.4)
>>> round(s.z_sobel, 4), round(s.z_aroian, 4), round(s.z_goodman, 4)
(4.9827, 4.9582, 5.0077)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from citytwin.foundation.errors import InputError
from citytwin.resilience.panel import check_columns, fit_fe
from citytwin.resilience.results import PanelResult


@dataclass
class SobelResult:
    """Indirect effect ``a·b`` with its Sobel, Aroian and Goodman z statistics and two-sided p-values."""

    indirect: float
    z_sobel: float
    z_aroian: float
    z_goodman: float
    p_sobel: float
    p_aroian: float
    p_goodman: float


def sobel(a: float, se_a: float, b: float, se_b: float) -> SobelResult:
    """Sobel (first-order), Aroian (second-order, +) and Goodman (−) tests of ``a·b``."""
    ab = a * b
    v1 = b * b * se_a * se_a + a * a * se_b * se_b
    v2 = se_a * se_a * se_b * se_b
    z = [ab / math.sqrt(v) if v > 0 else float("nan") for v in (v1, v1 + v2, v1 - v2)]
    p = [float(2 * stats.norm.sf(abs(zi))) if not math.isnan(zi) else float("nan") for zi in z]
    return SobelResult(ab, z[0], z[1], z[2], p[0], p[1], p[2])


@dataclass
class MechanismResult:
    """The steps, the indirect-effect tests and the simple X→M form.

    Attributes
    ----------
    steps
        ``total`` (Y ~ X), ``a`` (M ~ X), ``outcome`` (Y ~ X + M): :class:`PanelResult` each.
    simple
        The seed-002 X→M form (identical to ``steps["a"]``, kept under its own name for the table).
    sobel
        :class:`SobelResult` of ``a·b``.
    bootstrap
        ``indirect``, ``ci_low``, ``ci_high``, ``reps``, ``failed``, ``seed``, ``resampled`` (units or rows).
    info
        ``N``, ``dropped_missing``, ``proportion_mediated``, the columns.
    """

    steps: dict[str, PanelResult]
    simple: PanelResult
    sobel: SobelResult
    bootstrap: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """One row per quantity: effect, estimate, std_error, z or t, p, and the bootstrap interval."""
        x, m = self.info["x"], self.info["m"]
        t, a, o = self.steps["total"], self.steps["a"], self.steps["outcome"]
        rows = [
            ("total effect c (Y~X)", t.row(x)), ("a (M~X)", a.row(x)), ("b (Y~M|X)", o.row(m)),
            ("direct effect c' (Y~X|M)", o.row(x)),
        ]
        out = [{"effect": n, "estimate": r["estimate"], "std_error": r["std_error"], "stat": r["t"], "p": r["p"],
                "ci_low": np.nan, "ci_high": np.nan} for n, r in rows]
        s = self.sobel
        se = s.indirect / s.z_sobel if s.z_sobel else np.nan
        out.append({"effect": "indirect a*b (Sobel)", "estimate": s.indirect, "std_error": se,
                    "stat": s.z_sobel, "p": s.p_sobel, "ci_low": self.bootstrap.get("ci_low"),
                    "ci_high": self.bootstrap.get("ci_high")})
        out.append({"effect": "simple X->M (seed 002 form)", "estimate": self.simple.estimate(x),
                    "std_error": self.simple.std_error(x), "stat": self.simple.row(x)["t"],
                    "p": self.simple.row(x)["p"], "ci_low": np.nan, "ci_high": np.nan})
        return pd.DataFrame(out)


def stepwise(
    frame: pd.DataFrame,
    *,
    y: str,
    x: str,
    m: str,
    controls: Sequence[str] = (),
    fe: Sequence[str] = (),
    cluster: str | Sequence[str] | None = None,
    vcov: str = "cluster",
    unit: str | None = None,
    time: str | None = None,
    n_boot: int = 500,
    seed: int = 0,
    alpha: float = 0.05,
    source: str | None = None,
) -> MechanismResult:
    """Baron–Kenny steps with Sobel and bootstrap tests of the indirect effect.

    Parameters
    ----------
    frame
        The panel.
    y, x, m
        Outcome, regressor and mediator columns.
    controls, fe, cluster, vcov, unit, time
        As in :func:`citytwin.resilience.panel.fit_fe`, the same for every step.
    n_boot
        Bootstrap replications (0 to skip). Units (``cluster``, or ``unit``) are resampled with
        replacement; rows when neither is given.
    seed
        Seed of the bootstrap (``numpy.random.default_rng``).
    alpha
        1 − level of the percentile interval.
    source
        Name of the input, for error messages.

    Returns
    -------
    MechanismResult
    """
    ctrl = list(controls)
    cl = [cluster] if isinstance(cluster, str) else list(cluster or [])
    ids = list(dict.fromkeys([c for c in (unit, time) if c] + cl + list(fe)))
    cols = list(dict.fromkeys([y, x, m, *ctrl, *ids]))
    check_columns(frame, cols, numeric=[y, x, m, *ctrl], source=source)
    data = frame[cols].copy()
    for c in [y, x, m, *ctrl]:
        data[c] = pd.to_numeric(data[c], errors="coerce")
    miss = data.isna().any(axis=1)
    data = data.loc[~miss].reset_index(drop=True)
    kw: dict[str, Any] = {"fe": list(fe), "cluster": cluster, "vcov": vcov, "unit": unit, "time": time,
                          "source": source}
    total = fit_fe(data, y, x, controls=ctrl, **kw)
    a = fit_fe(data, m, x, controls=ctrl, **kw)
    out = fit_fe(data, y, [x, m], controls=ctrl, **kw)
    for r in (total, a, out):
        r.info["dropped_missing"] += int(miss.sum())
    s = sobel(a.estimate(x), a.std_error(x), out.estimate(m), out.std_error(m))
    boot: dict[str, Any] = {"reps": int(n_boot), "seed": int(seed), "failed": 0}
    if n_boot > 0:
        boot |= _bootstrap(data, y=y, x=x, m=m, controls=ctrl, fe=list(fe), group=cl[0] if len(cl) == 1 else unit, unit=unit,
                           n_boot=n_boot, seed=seed, alpha=alpha)
        boot["indirect"] = s.indirect
    info = {"N": out.nobs, "dropped_missing": int(miss.sum()), "x": x, "m": m, "y": y, "controls": ctrl,
            "fe": list(fe), "proportion_mediated": s.indirect / total.estimate(x) if total.estimate(x) else None}
    return MechanismResult(steps={"total": total, "a": a, "outcome": out}, simple=a, sobel=s, bootstrap=boot,
                           info=info)


def _bootstrap(data: pd.DataFrame, *, y: str, x: str, m: str, controls: list[str], fe: list[str],
               group: str | None, unit: str | None, n_boot: int, seed: int, alpha: float) -> dict[str, Any]:
    """Percentile bootstrap of ``a·b``, resampling groups (units) with replacement.

    Point estimates only, so each replication demeans with pyfixest's alternating projections
    (``pyfixest.estimation.demean``, tolerance 1e-10) and solves least squares with numpy, the same
    estimates as ``fit_fe`` (singletons do not change point estimates). A resampled unit drawn twice
    is two units (its fixed effect is duplicated, as in a cluster bootstrap).
    """
    from pyfixest.estimation import demean

    V = data[[y, m, x, *controls]].to_numpy(dtype=float)
    codes = {f: pd.factorize(data[f])[0] for f in fe}
    rng = np.random.default_rng(seed)
    if group is not None:
        gi = pd.factorize(data[group])[0]
        order = np.argsort(gi, kind="stable")
        starts = np.searchsorted(gi[order], np.arange(gi.max() + 2))
        n_g = int(gi.max()) + 1
        resampled = f"{n_g} clusters of {group!r}"
    else:
        resampled = f"{len(data)} rows"
    draws: list[float] = []
    failed = 0
    for _ in range(n_boot):
        if group is not None:
            pick = rng.integers(0, n_g, n_g)
            parts = [order[starts[k]:starts[k + 1]] for k in pick]
            rows = np.concatenate(parts)
            draw_id = np.repeat(np.arange(n_g), [len(p) for p in parts])
        else:
            rows = rng.integers(0, len(data), len(data))
            draw_id = np.arange(len(rows))
        B = V[rows]
        if fe:
            fl = np.column_stack([draw_id if f in (unit, group) else codes[f][rows] for f in fe]).astype(np.uint64)
            B, _conv = demean(np.ascontiguousarray(B), fl, np.ones(len(rows)), tol=1e-10)
            Z = B[:, 2:]
            Zo = B[:, 1:]
        else:
            one = np.ones((len(rows), 1))
            Z = np.hstack([B[:, 2:], one])
            Zo = np.hstack([B[:, 1:], one])
        ca, _, rank_a, _ = np.linalg.lstsq(Z, B[:, 1], rcond=None)
        co, _, rank_o, _ = np.linalg.lstsq(Zo, B[:, 0], rcond=None)
        if rank_a < Z.shape[1] or rank_o < Zo.shape[1]:
            failed += 1
            continue
        draws.append(float(ca[0] * co[0]))  # a: x in M ~ x; b: m in Y ~ m + x
    out: dict[str, Any] = {"resampled": resampled, "failed": failed}
    if draws:
        lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
        out |= {"ci_low": float(lo), "ci_high": float(hi), "se": float(np.std(draws, ddof=1)), "level": 1 - alpha}
    return out


def simple_xm(frame: pd.DataFrame, *, x: str, m: str, **kwargs: Any) -> PanelResult:
    """The X→M form (seed 002): M regressed on X with the panel estimator; ``kwargs`` go to ``fit_fe``."""
    return fit_fe(frame, m, x, **kwargs)


def causal_mediation(
    frame: pd.DataFrame,
    *,
    outcome_formula: str,
    mediator_formula: str,
    treatment: str,
    mediator: str,
    outcome_family: str = "gaussian",
    method: str = "boot",
    n_rep: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Causal mediation analysis (ACME, ADE, total effect), wrapping statsmodels' ``Mediation``.

    Parameters
    ----------
    frame
        The data.
    outcome_formula, mediator_formula
        Formulas of the outcome model (with the mediator and the treatment) and the mediator model.
    treatment, mediator
        Names of the treatment and mediator variables.
    outcome_family
        ``gaussian`` (OLS), ``probit`` or ``logit`` (binomial GLM).
    method
        ``boot`` or ``parametric``.
    n_rep, seed
        Replications and the seed of ``numpy.random.RandomState``.

    Returns
    -------
    pandas.DataFrame
        statsmodels' summary: ``Estimate``, ``Lower CI bound``, ``Upper CI bound``, ``P-value`` per effect.
    """
    import statsmodels.api as sm
    from statsmodels.stats.mediation import Mediation

    fams = {"probit": sm.families.links.Probit, "logit": sm.families.links.Logit}
    if outcome_family == "gaussian":
        om = sm.OLS.from_formula(outcome_formula, frame)
    elif outcome_family in fams:
        om = sm.GLM.from_formula(outcome_formula, frame, family=sm.families.Binomial(link=fams[outcome_family]()))
    else:
        raise InputError(f"unknown outcome family {outcome_family!r}", hint="gaussian, probit or logit")
    mm = sm.OLS.from_formula(mediator_formula, frame)
    med = Mediation(om, mm, treatment, mediator, outcome_fit_kwargs={"atol": 1e-11})
    res = med.fit(method=method, n_rep=n_rep, rng=np.random.RandomState(seed))
    summary: pd.DataFrame = res.summary()
    return summary
