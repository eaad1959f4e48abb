"""Group helpers for city panels: size classes, regions, the yearbook column map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.errors import InputError
from citytwin.resilience.data import city_regions, city_size_class, tidy_city_panel
from citytwin.resilience.heterogeneity import _fe_slope
from citytwin.resilience.panel import fit_fe


def test_city_size_class_bounds() -> None:
    got = city_size_class([1000, 999.9, 500, 300, 100, 50, 20, 19.9, np.nan]).tolist()
    assert got == ["super-large", "mega", "mega", "large-I", "large-II", "medium", "small-I", "small-II", None]
    with pytest.raises(InputError, match="row 2, field 'population': negative population"):
        city_size_class([10, -1])


def test_city_regions(shared_data: Path) -> None:
    look = pd.read_csv(shared_data / "city_boundaries_cnmaps" / "china_cities_amap_centroids.csv")
    assert city_regions(["杭州市", "贵阳", "巢湖市", "哈尔滨市"], look).tolist() == ["east", "west", "central",
                                                                                  "northeast"]
    with pytest.raises(InputError, match="not found"):
        city_regions(["不存在市"], look)


def test_tidy_refuses_other_panels() -> None:
    with pytest.raises(InputError, match="not the city yearbook panel"):
        tidy_city_panel(pd.DataFrame({"city": ["a"]}))


def test_fast_slope_equals_fit_fe() -> None:
    """The demean + least-squares path used by the bootstrap and permutation tests gives fit_fe's estimate."""
    rng = np.random.default_rng(4)
    f = pd.DataFrame([(u, t) for u in range(30) for t in range(8)], columns=["u", "t"]).sample(frac=0.9, random_state=1)
    f["x"] = rng.normal(size=len(f)) + f["u"] * 0.1
    f["z"] = rng.normal(size=len(f))
    f["y"] = 0.7 * f["x"] + 0.2 * f["z"] + f["u"] * 0.05 + rng.normal(size=len(f))
    r = fit_fe(f, "y", ["x", "z"], fe=["u", "t"], unit="u", time="t", cluster="u")
    codes = np.column_stack([pd.factorize(f["u"])[0], pd.factorize(f["t"])[0]])
    assert _fe_slope(f[["y", "x", "z"]].to_numpy(), codes) == pytest.approx(r.estimate("x"), rel=1e-8)
