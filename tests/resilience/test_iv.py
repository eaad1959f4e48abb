"""2SLS and lags by unit, side by side with linearmodels on its shipped data (mroz, wage_panel)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from linearmodels.datasets import mroz, wage_panel
from linearmodels.iv import IV2SLS

from citytwin.foundation.errors import InputError
from citytwin.resilience.iv import demean, iv_2sls, lag_by_unit

TOL = 1e-6


def _mroz() -> pd.DataFrame:
    d = mroz.load().dropna(subset=["lwage"]).reset_index(drop=True)
    d["const"] = 1.0
    return d


@pytest.mark.parametrize("cov", ["unadjusted", "robust"])
def test_iv_matches_linearmodels_on_mroz(cov: str) -> None:
    d = _mroz()
    ours = iv_2sls(d, "lwage", ["educ"], ["fatheduc", "motheduc"], ["exper", "expersq"], cov=cov)  # type: ignore[arg-type]
    ref = IV2SLS(d.lwage, d[["const", "exper", "expersq"]], d[["educ"]],
                 d[["fatheduc", "motheduc"]]).fit(cov_type=cov)
    c = ours.coefficients.set_index("term")
    np.testing.assert_allclose(c["estimate"], ref.params[c.index], rtol=0, atol=TOL)
    np.testing.assert_allclose(c["std_error"], ref.std_errors[c.index], rtol=0, atol=TOL)
    # Wooldridge (2010) ex. 15.x: the textbook 2SLS return to education on mroz is 0.0614
    assert c.loc["educ", "estimate"] == pytest.approx(0.061397, abs=1e-6)
    assert ours.nobs == 428
    fs = ref.first_stage.diagnostics
    assert ours.info["first_stage"]["educ"]["F"] == pytest.approx(fs.loc["educ", "f.stat"] / 2, rel=1e-12)
    assert ours.info["first_stage"]["educ"]["F"] > 10  # strong instruments
    assert "sargan" in ours.info
    if cov == "robust":
        assert ours.info["kp_rk_wald_F"] == ours.info["first_stage"]["educ"]["F"]
    else:
        assert ours.info["kp_rk_wald_F"] is None


def _wage() -> pd.DataFrame:
    d = wage_panel.load()
    d = d[d["nr"].isin(d["nr"].unique()[:120])]  # 120 men x 8 years keeps the dummy regression quick
    d["L1.hours"] = d.groupby("nr")["hours"].shift(1)  # complete yearly panel 1980-87: no gaps
    return d.dropna().reset_index(drop=True)


@pytest.mark.parametrize("fe", ["unit", "two-way"])
@pytest.mark.parametrize("cov", ["robust", "clustered"])
def test_fe_iv_equals_iv_with_dummies(fe: str, cov: str) -> None:
    """Within-transform then 2SLS == IV2SLS with unit (and year) dummies (FWL), coefficients and errors."""
    d = _wage()
    ours = iv_2sls(d, "lwage", ["hours"], ["L1.hours"], ["married", "union"], unit="nr", time="year",
                   fe=fe, cov=cov)  # type: ignore[arg-type]
    dummies = pd.get_dummies(d["nr"], prefix="u", dtype=float)
    if fe == "two-way":
        dummies = pd.concat([dummies, pd.get_dummies(d["year"], prefix="y", drop_first=True, dtype=float)], axis=1)
    ex = pd.concat([d[["married", "union"]], dummies], axis=1)
    kw = {"cov_type": cov}
    if cov == "clustered":
        kw["clusters"] = d["nr"]
    ref = IV2SLS(d.lwage, ex, d[["hours"]], d[["L1.hours"]]).fit(**kw)
    c = ours.coefficients.set_index("term")
    np.testing.assert_allclose(c["estimate"], ref.params[c.index], rtol=0, atol=TOL)
    np.testing.assert_allclose(c["std_error"], ref.std_errors[c.index], rtol=0, atol=TOL)
    if cov == "clustered":
        assert ours.info["clusters"] == d["nr"].nunique()


def test_demean_unbalanced_two_way_matches_dummy_regression() -> None:
    rng = np.random.default_rng(1)
    d = pd.DataFrame({"u": np.repeat(np.arange(30), 6), "t": np.tile(np.arange(6), 30)})
    d = d.sample(frac=0.8, random_state=2).reset_index(drop=True)
    x = rng.normal(size=len(d))
    dm = demean(x[:, None], d["u"].to_numpy(), d["t"].to_numpy())[:, 0]
    D = np.column_stack([pd.get_dummies(d["u"], dtype=float), pd.get_dummies(d["t"], dtype=float)])
    resid = x - D @ np.linalg.lstsq(D, x, rcond=None)[0]
    np.testing.assert_allclose(dm, resid, atol=1e-9)


def test_lag_by_unit_respects_gaps() -> None:
    d = pd.DataFrame({"city": ["a", "a", "a", "b", "b"], "year": [2010, 2011, 2013, 2011, 2010],
                      "x": [1.0, 2.0, 4.0, 20.0, 10.0]})
    out = lag_by_unit(d, "city", "year", ["x"])
    # 2013 follows a gap: its lag (2012) is missing, not 2011's value; b's rows are out of order
    assert out["L1.x"].tolist()[:3] == [pytest.approx(np.nan, nan_ok=True), 1.0, pytest.approx(np.nan, nan_ok=True)]
    assert out["L1.x"].tolist()[3:] == [10.0, pytest.approx(np.nan, nan_ok=True)]
    out2 = lag_by_unit(d, "city", "year", ["x"], lags=2)
    assert out2.loc[2, "L2.x"] == 2.0
    with pytest.raises(InputError, match="duplicate"):
        lag_by_unit(pd.concat([d, d.iloc[[0]]]), "city", "year", ["x"])


def test_bad_input() -> None:
    d = _mroz()
    d["educ2"] = 2 * d["exper"] + 0.5 * d["expersq"]
    with pytest.raises(InputError, match=r"collinear.*'educ2'"):
        iv_2sls(d, "lwage", ["educ"], ["fatheduc"], ["exper", "expersq", "educ2"])
    with pytest.raises(InputError, match="under-identified"):
        iv_2sls(d, "lwage", ["educ", "exper"], ["fatheduc"])
    d["city"] = "x"
    with pytest.raises(InputError, match=r"field 'city'.*not numeric"):
        iv_2sls(d, "lwage", ["educ"], ["fatheduc"], ["city"])
    w = _wage()
    with pytest.raises(InputError, match=r"black.*no variation"):
        iv_2sls(w, "lwage", ["hours"], ["L1.hours"], ["black"], unit="nr", fe="unit")
