"""Issue 12: one rule for text in a value column (index and disparity alike), and city-years missing
from the unit x period grid reported by the index — with the quarantine named for catalog datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from citytwin.economy.index import composite_index
from citytwin.economy.spec import IndexSpec, Indicator
from citytwin.foundation.errors import InputError
from citytwin.stats.values import numeric_column
from citytwin.workflows.disparity import _clean


def test_numeric_column_rule() -> None:
    assert numeric_column(pd.Series([1, 2.5, None]), name="v").tolist()[:2] == [1.0, 2.5]
    out = numeric_column(["1.5", " 暂无 ", "…", "NA", "", None, "-3e2"], name="v")
    assert out[0] == 1.5 and out[-1] == -300.0 and np.isnan(out[1:6]).all()
    with pytest.raises(InputError, match=r"'n\.a\.' \(row 2\)") as ei:
        numeric_column(["1", "n.a.", "x"], name="gdp", source="p.csv")
    assert ei.value.row == 2 and ei.value.field == "gdp" and "2 such value" in (ei.value.hint or "")


def test_disparity_and_index_apply_the_same_rule() -> None:
    panel = pd.DataFrame({"city": ["a", "b", "c", "d"], "year": [2020] * 4, "region": ["e", "e", "w", "w"],
                          "gdp": ["1.0", "暂无", "3", "oops"]})
    with pytest.raises(InputError, match="oops"):
        _clean(panel, ["city", "year", "region", "gdp"], "gdp")
    spec = IndexSpec(id="city", time="year", indicators=[Indicator(column="gdp")])
    with pytest.raises(InputError, match="oops"):
        composite_index(panel, spec, "entropy")
    ok = panel.assign(gdp=["1.0", "暂无", "3", "4"])
    df, dropped = _clean(ok, ["city", "year", "region", "gdp"], "gdp")
    assert dropped == 1 and df["gdp"].tolist() == [1.0, 3.0, 4.0]


def test_index_reports_missing_city_years(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [{"city": c, "year": y, "x1": rng.uniform(1, 9), "x2": rng.uniform(1, 9)}
            for c in "abcd" for y in (2019, 2020, 2021) if not (c == "b" and y == 2020)]
    spec = IndexSpec(id="city", time="year", indicators=[Indicator(column="x1"), Indicator(column="x2")])
    r = composite_index(pd.DataFrame(rows), spec, "entropy")
    msg = [w for w in r.warnings if "unit-period cells have no row" in w]
    assert msg and msg[0].startswith("1 of the 4 x 3") and "b 2020" in msg[0]
