"""Kernel density, σ/β-convergence, classic and spatial Markov (B4): REFERENCES.md and giddy/spreg side by side."""

from __future__ import annotations

import warnings

import libpysal
import numpy as np
import pandas as pd
import pytest
from libpysal.examples import get_path

from citytwin.economy.dynamics import (
    beta_convergence,
    kernel_density,
    markov,
    sigma_convergence,
    spatial_markov,
    steady_state,
)
from citytwin.foundation.errors import InputError

US_YEARS = [str(y) for y in range(1929, 2010)]


@pytest.fixture(scope="module")
def usjoin() -> pd.DataFrame:
    return pd.read_csv(get_path("usjoin.csv"))


@pytest.fixture(scope="module")
def us_long(usjoin: pd.DataFrame) -> pd.DataFrame:
    long = usjoin.melt(id_vars=["Name"], value_vars=US_YEARS, var_name="year", value_name="pci")
    return long.assign(year=long["year"].astype(int))


@pytest.fixture(scope="module")
def states_w(usjoin: pd.DataFrame) -> libpysal.weights.W:
    """states48.gal (ids '0'..'47' = row positions of usjoin.csv) relabelled with state names."""
    w = libpysal.io.open(get_path("states48.gal")).read()
    names = usjoin["Name"].tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return libpysal.weights.W({names[int(k)]: [names[int(j)] for j in v] for k, v in w.neighbors.items()},
                                  id_order=[names[int(i)] for i in w.id_order])


@pytest.fixture(scope="module")
def mexico_long() -> pd.DataFrame:
    m = pd.read_csv(get_path("mexico.csv"))
    long = m.melt(id_vars=["State", "hanson98"], value_vars=[f"pcgdp{y}" for y in range(1940, 2010, 10)],
                  var_name="year", value_name="pcgdp")
    return long.assign(year=long["year"].str[5:].astype(int))


def test_markov_usjoin_reference_and_giddy(usjoin: pd.DataFrame, us_long: pd.DataFrame) -> None:
    import mapclassify as mc
    from giddy.markov import Markov

    r = markov(us_long, value="pci", time="year", id="Name", k=5, classes="quantile")
    # REFERENCES.md [P]: quintiles per year
    ref = [[729, 71, 1, 0, 0], [72, 567, 80, 3, 0], [0, 81, 631, 86, 2], [0, 3, 86, 573, 56], [0, 0, 1, 57, 741]]
    assert r.transitions.to_numpy().tolist() == ref
    np.testing.assert_allclose(r.steady_state, [0.20774716, 0.18725774, 0.20740537, 0.18821787, 0.20937187],
                               atol=5e-9)
    pci = usjoin[US_YEARS].to_numpy().T
    q5 = np.array([mc.Quantiles(y, k=5).yb for y in pci]).transpose()
    g = Markov(q5, summary=False)
    np.testing.assert_array_equal(r.transitions.to_numpy(), g.transitions)
    np.testing.assert_allclose(r.p.to_numpy(), g.p, atol=1e-15)
    np.testing.assert_allclose(r.steady_state, g.steady_state, atol=1e-12)
    np.testing.assert_array_equal(r.classes.loc[usjoin["Name"]].to_numpy(), q5)
    np.testing.assert_allclose(r.sojourn_time, 1 / (1 - np.diag(g.p)), rtol=1e-12)


def test_spatial_markov_reference_and_giddy(usjoin: pd.DataFrame, us_long: pd.DataFrame,
                                            states_w: libpysal.weights.W) -> None:
    from giddy.markov import Spatial_Markov

    r = spatial_markov(us_long, states_w, value="pci", time="year", id="Name", k=5, m=5)
    # REFERENCES.md [P]: relative income, pooled quintiles, row-standardised states48.gal
    assert pytest.approx(170.659, abs=5e-4) == r.LR
    assert pytest.approx(200.624, abs=5e-4) == r.Q
    assert r.dof == 60
    w = libpysal.io.open(get_path("states48.gal")).read()
    w.transform = "r"
    pci = usjoin[US_YEARS].to_numpy()
    g = Spatial_Markov(pci / pci.mean(axis=0), w, fixed=True, k=5, m=5)
    np.testing.assert_array_equal(r.T, g.T)
    np.testing.assert_allclose(r.P, g.P, atol=1e-15)
    assert (r.LR, r.Q, r.dof) == pytest.approx((g.LR, g.Q, g.dof_hom), rel=1e-12)
    assert (r.LR_p_value, r.Q_p_value) == pytest.approx((g.LR_p_value, g.Q_p_value), abs=1e-12)
    np.testing.assert_allclose(r.cutoffs, g.cutoffs, rtol=1e-14)
    np.testing.assert_allclose(r.lag_cutoffs, g.lag_cutoffs, rtol=1e-14)
    np.testing.assert_allclose(r.steady_states.to_numpy(), np.vstack(g.S).astype(float), atol=1e-10)
    assert len(r.long_table()) == 5 * 5 * 5


def test_sigma_and_beta_convergence_reference(mexico_long: pd.DataFrame) -> None:
    import statsmodels.api as sm

    s = sigma_convergence(mexico_long, value="pcgdp", time="year")
    # REFERENCES.md [C]: σ(ln y), ddof 0
    assert s["sigma"].round(4).tolist() == [0.6201, 0.4959, 0.4368, 0.4578, 0.4319, 0.4375, 0.4512]
    b = beta_convergence(mexico_long, value="pcgdp", time="year", id="State")
    assert b.model == "absolute" and b.periods == 60
    assert b.beta == pytest.approx(-0.007255, abs=5e-7)
    assert b.se == pytest.approx(0.001396, abs=5e-7)
    assert b.speed == pytest.approx(0.00952, abs=5e-6)
    assert b.half_life == pytest.approx(72.8, abs=0.05)
    # statsmodels OLS side by side (same classical standard errors)
    wide = mexico_long.pivot(index="State", columns="year", values="pcgdp")
    g = (np.log(wide[2000]) - np.log(wide[1940])) / 60
    ols = sm.OLS(g, sm.add_constant(np.log(wide[1940]))).fit()
    assert b.coefficients["coef"].tolist() == pytest.approx(ols.params.tolist(), rel=1e-10)
    assert b.coefficients["se"].tolist() == pytest.approx(ols.bse.tolist(), rel=1e-10)
    assert b.r2 == pytest.approx(ols.rsquared, rel=1e-10)


def test_conditional_beta_equals_statsmodels(mexico_long: pd.DataFrame) -> None:
    import statsmodels.api as sm

    df = mexico_long.assign(south=lambda d: (d["hanson98"] >= 4).astype(float))
    b = beta_convergence(df, value="pcgdp", time="year", id="State", controls=["south"])
    assert b.model == "conditional" and list(b.coefficients.index)[-1] == "south"
    wide = df.pivot(index="State", columns="year", values="pcgdp")
    south = df[df["year"] == 1940].set_index("State")["south"].loc[wide.index]
    X = sm.add_constant(pd.DataFrame({"ly0": np.log(wide[1940]), "south": south}))
    ols = sm.OLS((np.log(wide[2000]) - np.log(wide[1940])) / 60, X).fit()
    np.testing.assert_allclose(b.coefficients["coef"], ols.params, rtol=1e-10)
    np.testing.assert_allclose(b.coefficients["se"], ols.bse, rtol=1e-10)
    np.testing.assert_allclose(b.coefficients["p"], ols.pvalues, rtol=1e-8)


def test_spatial_beta_equals_spreg_ml_lag(usjoin: pd.DataFrame, us_long: pd.DataFrame,
                                         states_w: libpysal.weights.W) -> None:
    import spreg

    b = beta_convergence(us_long, value="pci", time="year", id="Name", w=states_w, start=1929, end=2009)
    w = libpysal.io.open(get_path("states48.gal")).read()
    w.transform = "r"
    y0 = np.log(usjoin["1929"].to_numpy())
    g = (np.log(usjoin["2009"].to_numpy()) - y0) / 80
    ml = spreg.ML_Lag(g[:, None], y0[:, None], w=w, method="full")
    # beta_convergence wraps spreg.ML_Lag (method "full" up to 1,000 units): the same numbers
    # (before issue 11 it had its own optimiser and agreed to rtol 1e-5)
    np.testing.assert_allclose(b.coefficients["coef"], ml.betas.ravel(), rtol=1e-12)
    np.testing.assert_allclose(b.coefficients["se"], ml.std_err, rtol=1e-12)
    assert b.log_likelihood == pytest.approx(ml.logll, rel=1e-9)
    assert b.model == "spatial_lag" and b.rho == pytest.approx(ml.rho, rel=1e-5)
    assert b.beta < 0 and b.half_life > 0


def test_spatial_error_beta_equals_spreg_ml_error(usjoin: pd.DataFrame, us_long: pd.DataFrame,
                                                 states_w: libpysal.weights.W) -> None:
    import spreg

    b = beta_convergence(us_long, value="pci", time="year", id="Name", w=states_w, spatial="error")
    w = libpysal.io.open(get_path("states48.gal")).read()
    w.transform = "r"
    y0 = np.log(usjoin["1929"].to_numpy())
    g = (np.log(usjoin["2009"].to_numpy()) - y0) / 80
    ml = spreg.ML_Error(g[:, None], y0[:, None], w=w, method="full")
    assert b.model == "spatial_error" and list(b.coefficients.index)[-1] == "lambda"
    # beta_convergence wraps spreg.ML_Error, on a W rebuilt from the sparse matrix (states named,
    # links in another order): spreg's bounded optimiser (epsilon 1e-7) then stops ~1e-6 apart
    np.testing.assert_allclose(b.coefficients["coef"], ml.betas.ravel(), rtol=1e-5)
    np.testing.assert_allclose(b.coefficients["se"], ml.std_err, rtol=1e-4)
    assert b.log_likelihood == pytest.approx(ml.logll, rel=1e-9)


def test_kernel_density_equals_scipy_and_finds_peaks(mexico_long: pd.DataFrame) -> None:
    from scipy.stats import gaussian_kde

    for rule in ("scott", "silverman"):
        kd = kernel_density(mexico_long, value="pcgdp", time="year", log=True, bandwidth=rule)
        for year in (1940, 2000):
            x = np.log(mexico_long.loc[mexico_long["year"] == year, "pcgdp"].to_numpy())
            ref = gaussian_kde(x, bw_method=rule)(kd.grid)
            np.testing.assert_allclose(kd.density.loc[year].to_numpy(), ref, rtol=1e-10, atol=1e-14)
        assert np.trapezoid(kd.density.loc[1940].to_numpy(), kd.grid) == pytest.approx(1.0, abs=1e-3)
    # a bimodal sample has two peaks at the modes
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 400), rng.normal(6, 1, 400)])
    kd = kernel_density(pd.DataFrame({"t": 1, "v": x}), value="v", time="t")
    assert kd.summary["n_peaks"].iloc[0] == 2
    assert sorted(kd.peaks["x"].round(0).tolist()) == [0.0, 6.0]


def test_steady_state_and_bad_input(us_long: pd.DataFrame, states_w: libpysal.weights.W) -> None:
    assert steady_state(np.array([[0.5, 0.5], [0.25, 0.75]])) == pytest.approx([1 / 3, 2 / 3])
    unbalanced = us_long[~((us_long["Name"] == "Ohio") & (us_long["year"] == 1950))]
    with pytest.raises(InputError, match=r"missing periods.*Ohio"):
        markov(unbalanced, value="pci", time="year", id="Name")
    with pytest.raises(InputError, match="duplicate unit-period"):
        markov(pd.concat([us_long, us_long.head(1)]), value="pci", time="year", id="Name")
    with pytest.raises(InputError, match="ties"):
        markov(us_long.assign(pci=1.0), value="pci", time="year", id="Name")
    with pytest.raises(InputError, match="weights ids do not match"):
        spatial_markov(us_long[us_long["Name"] != "Ohio"], states_w, value="pci", time="year", id="Name")
    with pytest.raises(InputError, match="not positive"):
        sigma_convergence(us_long.assign(pci=0.0), value="pci", time="year")
    with pytest.raises(InputError, match="constant"):
        kernel_density(us_long.assign(pci=3.0), value="pci", time="year")
    with pytest.raises(InputError, match="collinear"):
        beta_convergence(us_long.assign(c=1.0), value="pci", time="year", id="Name", controls=["c"])
    with pytest.raises(InputError, match="not in the panel"):
        beta_convergence(us_long, value="gdp", time="year", id="Name")


def test_beta_robust_errors_and_sparse_ml_method(mexico_long: pd.DataFrame, us_long: pd.DataFrame,
                                                 states_w: libpysal.weights.W) -> None:
    import statsmodels.api as sm

    # heteroskedasticity-robust standard errors (issue 11: classical errors only before)
    b = beta_convergence(mexico_long, value="pcgdp", time="year", id="State", cov_type="HC1")
    wide = mexico_long.pivot(index="State", columns="year", values="pcgdp")
    ols = sm.OLS((np.log(wide[2000]) - np.log(wide[1940])) / 60, sm.add_constant(np.log(wide[1940]))).fit(
        cov_type="HC1")
    np.testing.assert_allclose(b.coefficients["se"], ols.bse, rtol=1e-10)
    np.testing.assert_allclose(b.coefficients["p"], ols.pvalues, rtol=1e-8)
    assert b.beta == pytest.approx(-0.007255, abs=5e-7)  # the estimate does not change, its s.e. does
    with pytest.raises(InputError, match="cov_type"):
        beta_convergence(mexico_long, value="pcgdp", time="year", id="State", cov_type="HC9")
    # sparse LU log-determinant (memory linear in the links) gives the dense result
    full = beta_convergence(us_long, value="pci", time="year", id="Name", w=states_w, ml_method="full")
    lu = beta_convergence(us_long, value="pci", time="year", id="Name", w=states_w, ml_method="LU")
    np.testing.assert_allclose(lu.coefficients["coef"], full.coefficients["coef"], rtol=1e-5)
    np.testing.assert_allclose(lu.coefficients["se"], full.coefficients["se"], rtol=1e-4)


def test_beta_refuses_values_constant_over_time_or_across_units() -> None:
    # issue 12: a value constant over time made the growth regression divide by zero
    df = pd.DataFrame({"id": [1, 2, 3, 4] * 2, "t": [0] * 4 + [5] * 4, "y": [1.0, 2, 3, 4, 1, 2, 3, 4]})
    with pytest.raises(InputError, match="grows alike for every unit from 0 to 5"):
        beta_convergence(df, value="y", time="t", id="id")
    same = df.assign(y=[2.0] * 4 + [1.0, 2, 3, 4])
    with pytest.raises(InputError, match="same for every unit in period 0"):
        beta_convergence(same, value="y", time="t", id="id")
