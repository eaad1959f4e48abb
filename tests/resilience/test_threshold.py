"""Hansen (1999) panel threshold: planted thresholds recovered, the grid rule, bootstrap p-values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.errors import InputError
from citytwin.resilience.threshold import panel_threshold, threshold_grid


def _panel(cuts: list[float], slopes: list[float], n: int = 60, t: int = 8, seed: int = 0,
           noise: float = 0.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(n), t)
    year = np.tile(np.arange(2010, 2010 + t), n)
    q = rng.uniform(0, 10, n * t)
    x = rng.normal(size=n * t)
    z = rng.normal(size=n * t)
    mu = rng.normal(scale=3, size=n)[unit]
    regime = np.searchsorted(np.asarray(cuts), q, side="left")  # q <= cut -> lower regime
    yv = mu + np.asarray(slopes)[regime] * x + 0.7 * z + rng.normal(scale=noise, size=n * t)
    return pd.DataFrame({"city": unit, "year": year, "y": yv, "x": x, "q": q, "z": z})


def test_grid_rule_documented() -> None:
    """The grid is the inverted-CDF quantiles at trim + (1-2 trim) k/(n_grid-1): observed values only."""
    q = np.arange(1, 101, dtype=float)  # 1..100
    g = threshold_grid(q, trim=0.05, n_grid=10)
    # probabilities .05, .15, ..., .95 -> the 5th, 15th, ..., 95th smallest observation
    np.testing.assert_array_equal(g, [5, 15, 25, 35, 45, 55, 65, 75, 85, 95])
    g = threshold_grid(q, trim=0.01, n_grid=3)
    np.testing.assert_array_equal(g, [1, 50, 99])
    # duplicates collapse; every candidate is a value of q
    qd = np.repeat([1.0, 2.0, 3.0], [50, 30, 20])
    np.testing.assert_array_equal(threshold_grid(qd, trim=0.05, n_grid=100), [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="constant"):
        threshold_grid(np.ones(10))


def test_single_threshold_recovered_within_one_grid_step() -> None:
    d = _panel([4.0], [1.0, 3.0])
    r = panel_threshold(d, "y", ["x"], "q", "city", "year", ["z"], bootstrap=0, n_grid=100)
    grid = r.grid
    i = int(np.searchsorted(grid, 4.0))
    assert grid[max(i - 1, 0)] <= r.thresholds[0] <= grid[min(i + 1, len(grid) - 1)]
    assert abs(r.thresholds[0] - 4.0) < 0.15
    c = r.result.coefficients.set_index("term")
    low, high = [t for t in c.index if t.startswith("x@")]
    assert c.loc[low, "estimate"] == pytest.approx(1.0, abs=0.1)
    assert c.loc[high, "estimate"] == pytest.approx(3.0, abs=0.1)
    assert c.loc["z", "estimate"] == pytest.approx(0.7, abs=0.1)
    lo, hi = r.ci[0]
    assert lo <= r.thresholds[0] <= hi
    assert r.result.nobs == 480
    # the within-transformed regression at the chosen threshold is plain OLS on demeaned data
    g = r.thresholds[0]
    dm = d.copy()
    dm["xl"], dm["xh"] = d.x * (d.q <= g), d.x * (d.q > g)
    cols = ["y", "xl", "xh", "z"]
    dm[cols] = dm[cols] - dm.groupby("city")[cols].transform("mean")
    b = np.linalg.lstsq(dm[["xl", "xh", "z"]].to_numpy(), dm["y"].to_numpy(), rcond=None)[0]
    np.testing.assert_allclose(c["estimate"].to_numpy(), b, atol=1e-10)


def test_double_threshold_recovered() -> None:
    d = _panel([3.0, 7.0], [-1.0, 1.0, 3.0], n=80, seed=3)
    r = panel_threshold(d, "y", ["x"], "q", "city", "year", ["z"], n_thresholds=2, bootstrap=0)
    step = float(np.max(np.diff(r.grid)))
    np.testing.assert_allclose(r.thresholds, [3.0, 7.0], atol=step)
    est = r.result.coefficients.set_index("term")["estimate"]
    np.testing.assert_allclose(est.iloc[:3], [-1.0, 1.0, 3.0], atol=0.15)
    assert len(r.f_stats) == 2 and r.f_stats[1] > 50


def test_bootstrap_p_values_small_for_real_large_for_none() -> None:
    real = panel_threshold(_panel([5.0], [1.0, 2.0], n=40, t=6, seed=5), "y", ["x"], "q", "city", "year",
                           bootstrap=49, n_grid=30, seed=11)
    assert real.p_values[0] is not None and real.p_values[0] <= 0.05
    none = panel_threshold(_panel([5.0], [1.0, 1.0], n=40, t=6, seed=6), "y", ["x"], "q", "city", "year",
                           bootstrap=49, n_grid=30, seed=11)
    assert none.p_values[0] is not None and none.p_values[0] >= 0.2
    again = panel_threshold(_panel([5.0], [1.0, 1.0], n=40, t=6, seed=6), "y", ["x"], "q", "city", "year",
                            bootstrap=49, n_grid=30, seed=11)
    assert again.p_values == none.p_values  # seeded


def test_double_threshold_bootstrap_runs_seeded() -> None:
    d = _panel([3.0, 7.0], [-1.0, 1.0, 3.0], n=30, t=5, seed=8)
    r = panel_threshold(d, "y", ["x"], "q", "city", "year", n_thresholds=2, bootstrap=9, n_grid=15, seed=1)
    assert r.p_values[0] == 0.0 and r.p_values[1] is not None and r.p_values[1] <= 0.2


def test_bad_input() -> None:
    d = _panel([4.0], [1.0, 3.0], n=10, t=4)
    with pytest.raises(InputError, match="constant"):
        panel_threshold(d.assign(q=1.0), "y", ["x"], "q", "city", "year", bootstrap=0)
    with pytest.raises(InputError, match="unbalanced"):
        panel_threshold(d.iloc[1:], "y", ["x"], "q", "city", "year", bootstrap=0)
    with pytest.raises(InputError, match="collinear"):
        panel_threshold(d.assign(z2=2 * d.z), "y", ["x"], "q", "city", "year", ["z", "z2"], bootstrap=0)
    with pytest.raises(InputError, match="no variation"):
        panel_threshold(d.assign(k=d.city * 2.0), "y", ["x"], "q", "city", "year", ["k"], bootstrap=0)
    with pytest.raises(InputError, match=r"row 41, field 'year': duplicate"):
        panel_threshold(pd.concat([d, d.iloc[[5]]], ignore_index=True), "y", ["x"], "q", "city", "year", bootstrap=0)
    bad = d.copy()
    bad.loc[3, "x"] = np.nan
    with pytest.raises(InputError, match=r"row 4, field 'x'"):
        panel_threshold(bad, "y", ["x"], "q", "city", "year", bootstrap=0)


def test_real_city_panel(shared_data) -> None:  # type: ignore[no-untyped-def]
    """Real 287-city panel: the raw panel is refused (unbalanced, named); the cities with all 9 years run,
    and the coefficients at g_hat equal OLS on the within-transformed data."""
    x = pd.read_excel(shared_data / "city_sustainability_jcdasheng" / "1999-2018_Cities_data.xlsx", sheet_name="new")
    d = pd.DataFrame({"city": x["城市"], "year": x["年份"],
                      "lgdppc": np.log(x["地区生产总值_当年价格_全市_万元"] / x["年末总人口_全市_万人"]),
                      "fiscal": x["财政收入 市 占GDP比重"], "tertiary": x["第三产业占GDP的比重_全市_百分比"]})
    with pytest.raises(InputError, match="unbalanced panel"):
        panel_threshold(d.dropna(), "lgdppc", ["fiscal"], "tertiary", "city", "year", bootstrap=0)
    d = d.dropna()
    d = d[d.groupby("city")["year"].transform("size") == 9].reset_index(drop=True)
    r = panel_threshold(d, "lgdppc", ["fiscal"], "tertiary", "city", "year", bootstrap=19, seed=3, fe="two-way")
    assert r.result.nobs == len(d) and r.result.info["periods"] == 9
    assert r.thresholds[0] in set(r.grid)
    assert r.p_values[0] is not None and 0.0 <= r.p_values[0] <= 1.0
    gam = r.thresholds[0]
    from citytwin.resilience.iv import demean

    xs = np.column_stack([d.fiscal * (d.tertiary <= gam), d.fiscal * (d.tertiary > gam)])
    dm = demean(np.column_stack([d.lgdppc, xs]), d.city.to_numpy(), d.year.to_numpy())
    b = np.linalg.lstsq(dm[:, 1:], dm[:, 0], rcond=None)[0]
    np.testing.assert_allclose(r.result.coefficients["estimate"], b, atol=1e-9)
