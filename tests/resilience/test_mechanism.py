"""Mechanism tests: Sobel reference values, statsmodels' mediation reference, Baron–Kenny steps."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from citytwin.resilience.mechanism import causal_mediation, sobel, stepwise
from citytwin.resilience.panel import fit_fe


def test_sobel_reference() -> None:
    s = sobel(2.0, 0.3, 3.0, 0.4)
    assert s.indirect == 6.0
    assert s.z_sobel == pytest.approx(4.9827, abs=5e-5)
    assert s.z_aroian == pytest.approx(4.9582, abs=5e-5)
    assert s.z_goodman == pytest.approx(5.0077, abs=5e-5)


def test_causal_mediation_framing_reference() -> None:
    """R ``mediation`` vignette numbers as reproduced by statsmodels (framing.csv, seed 4231, 100 reps)."""
    import statsmodels

    data = pd.read_csv(os.path.join(os.path.dirname(statsmodels.__file__), "stats", "tests", "results",
                                    "framing.csv"))
    r = causal_mediation(data, outcome_formula="cong_mesg ~ emo + treat + age + educ + gender + income",
                         mediator_formula="emo ~ treat + age + educ + gender + income", treatment="treat",
                         mediator="emo", outcome_family="probit", method="boot", n_rep=100, seed=4231)
    assert r.loc["ACME (average)", "Estimate"] == pytest.approx(0.085390, abs=1e-6)
    assert r.loc["ADE (average)", "Estimate"] == pytest.approx(0.017222, abs=1e-6)
    assert r.loc["Total effect", "Estimate"] == pytest.approx(0.102612, abs=1e-6)
    p = causal_mediation(data, outcome_formula="cong_mesg ~ emo + treat + age + educ + gender + income",
                         mediator_formula="emo ~ treat + age + educ + gender + income", treatment="treat",
                         mediator="emo", outcome_family="probit", method="parametric", n_rep=100, seed=4231)
    np.testing.assert_allclose(p.loc[["ACME (average)", "ADE (average)", "Total effect"], "Estimate"],
                               [0.075938, 0.021798, 0.097736], atol=1e-6)


def planted(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    f = pd.DataFrame([(u, t) for u in range(40) for t in range(2001, 2011)], columns=["city", "year"])
    ue = rng.normal(size=40)[f["city"]]
    f["x"] = rng.normal(size=len(f)) + ue
    f["m"] = 0.8 * f["x"] + ue + rng.normal(size=len(f))
    f["y"] = 0.5 * f["m"] + 0.2 * f["x"] + ue + 0.05 * (f["year"] - 2000) + rng.normal(size=len(f))
    return f


def test_stepwise_equals_its_regressions_and_finds_planted_mediation() -> None:
    f = planted()
    r = stepwise(f, y="y", x="x", m="m", fe=["city", "year"], cluster="city", unit="city", time="year",
                 n_boot=99, seed=1)
    a = fit_fe(f, "m", "x", fe=["city", "year"], cluster="city", unit="city", time="year")
    o = fit_fe(f, "y", ["x", "m"], fe=["city", "year"], cluster="city", unit="city", time="year")
    assert r.steps["a"].estimate("x") == a.estimate("x") and r.steps["outcome"].estimate("m") == o.estimate("m")
    assert r.sobel.indirect == pytest.approx(a.estimate("x") * o.estimate("m"), rel=1e-12)
    # planted: a = 0.8, b = 0.5 -> a*b = 0.4
    assert 0.3 < r.sobel.indirect < 0.5 and r.sobel.p_sobel < 1e-6
    assert r.bootstrap["ci_low"] < r.sobel.indirect < r.bootstrap["ci_high"] and r.bootstrap["ci_low"] > 0.2
    assert r.bootstrap["failed"] == 0 and r.bootstrap["resampled"] == "40 clusters of 'city'"
    s = r.summary()
    assert list(s["effect"])[-1] == "simple X->M (seed 002 form)"
    assert s.iloc[-1]["estimate"] == a.estimate("x")
    again = stepwise(f, y="y", x="x", m="m", fe=["city", "year"], cluster="city", unit="city", time="year",
                     n_boot=99, seed=1)
    assert again.bootstrap["ci_low"] == r.bootstrap["ci_low"]  # seeded


def test_stepwise_no_mediation() -> None:
    f = planted()
    f["m"] = np.random.default_rng(9).normal(size=len(f))  # unrelated to x and y
    r = stepwise(f, y="y", x="x", m="m", fe=["city", "year"], cluster="city", unit="city", time="year", n_boot=0)
    assert r.sobel.p_sobel > 0.05 and r.bootstrap["reps"] == 0
