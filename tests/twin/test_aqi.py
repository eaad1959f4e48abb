"""AQI per HJ 633-2012: the REFERENCES.md cases, the switch rules, and daily AQI on real Beijing data."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.errors import InputError
from citytwin.twin.aqi import aqi, category, daily_aqi, hourly_aqi, iaqi, load_table

STATION = "air_beijing_multisite/PRSA_Data_Dongsi_20130301-20170228.csv"
UCI = {"PM2.5": "pm25", "PM10": "pm10", "SO2": "so2", "NO2": "no2", "CO": "co", "O3": "o3"}


# --- REFERENCES.md, F Twin, AQI [V] -----------------------------------------------------------------

def test_reference_daily_case() -> None:
    r = aqi({"pm25": 120, "pm10": 180, "so2": 65, "no2": 150, "co": 8, "o3_8h": 200})
    assert r.iaqi == {"pm25": 158, "pm10": 115, "so2": 58, "no2": 135, "co": 120, "o3_8h": 137}
    assert r.aqi == 158
    assert r.category is not None
    assert r.category.zh == "中度污染"
    assert r.category.en == "Moderately polluted"
    assert r.level == 4
    assert r.primary == ("pm25",)
    assert r.primary_names == ("PM2.5",)
    assert set(r.exceeding) == {"pm25", "pm10", "no2", "co", "o3_8h"}


def test_reference_single_pm25() -> None:
    assert iaqi("pm25", 45) == 63  # python-aqi's US table gives 62: not our reference
    assert aqi({"pm25": 45}).aqi == 63


def test_rounding_is_upward_and_exact_on_breakpoints() -> None:
    assert iaqi("pm25", 35) == 50
    assert iaqi("pm25", 35.1) == 51  # 50.125 rounds up
    assert iaqi("pm10", 180) == 115  # exactly 115.0, floating noise must not push it to 116
    assert iaqi("co", 0) == 0
    assert iaqi("no2", 80, "24h") == 100 and iaqi("no2", 200, "1h") == 100


def test_switch_rules() -> None:
    # SO2 1-hour above 800: no IAQI from the 1-hour value; the 24-hour one is reported.
    assert iaqi("so2", 801, "1h") is None
    assert iaqi("so2", 801, "1h", alternate=65) == 58
    assert iaqi("so2", 800, "1h") == 200
    r = aqi({"so2_1h": 900, "so2_24h": 65}, period="1h")
    assert r.iaqi == {"so2": 58}
    assert any("reported by its 24h IAQI" in n for n in r.notes)
    # O3 8-hour above 800: the O3 1-hour IAQI stands.
    assert iaqi("o3", 801, "8h") is None
    assert iaqi("o3", 801, "8h", alternate=850) == 325
    r = aqi({"o3_8h": 900, "o3_1h": 850})
    assert r.iaqi == {"o3_8h": None, "o3_1h": 325} and r.aqi == 325 and r.primary == ("o3_1h",)


def test_categories_and_primary_threshold() -> None:
    assert [category(v).level for v in (0, 50, 51, 100, 101, 150, 151, 200, 201, 300, 301, 500)] == \
        [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    # AQI <= 50: no primary pollutant (HJ 633-2012 5.2)
    assert aqi({"pm25": 20, "no2": 30}).primary == ()
    # ties: every pollutant at the maximum is primary
    assert set(aqi({"pm25": 75, "pm10": 150}).primary) == {"pm25", "pm10"}


def test_missing_stays_missing_and_bad_input() -> None:
    assert iaqi("pm10", None) is None
    assert iaqi("pm10", float("nan")) is None
    r = aqi({"pm25": None, "pm10": float("nan")})
    assert r.aqi is None and r.category is None and r.primary == ()
    with pytest.raises(InputError, match="negative"):
        iaqi("pm25", -1)
    with pytest.raises(InputError, match="no 1h breakpoints for pm25"):
        iaqi("pm25", 10, "1h")
    # ... but a 1-hour PM value in a real-time AQI is read on the 24-hour breakpoints
    assert aqi({"pm25_1h": 45, "no2": 150}, period="1h").iaqi == {"pm25": 63, "no2": 75}
    with pytest.raises(InputError, match="unknown pollutant"):
        aqi({"benzene": 3})


def test_beyond_scale_capped_and_reported() -> None:
    r = aqi({"pm25": 600})
    assert r.aqi == 500 and r.beyond_scale == ("pm25",) and r.category.zh == "严重污染"


def test_table_is_versioned_and_names_source() -> None:
    t = load_table()
    assert t.standard == "HJ 633-2012"
    text = Path(t.source).read_text(encoding="utf-8")
    assert "HJ 633-2012" in text and "Table 1" in text


# --- vectorised, on real data ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dongsi(shared_data: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    wide = pd.read_csv(shared_data / STATION)
    wide["time"] = pd.to_datetime(wide[["year", "month", "day", "hour"]])
    long = wide.melt(id_vars=["station", "time"], value_vars=list(UCI), var_name="property",
                     value_name="value").rename(columns={"station": "entity"})
    long["property"] = long["property"].map(UCI)
    long["unit"] = "µg/m³"  # the UCI file gives CO in µg/m³ too: converted to mg/m³ by daily_aqi
    return wide, long


def _hand_iaqi(c: float, bps: list[float]) -> int:
    levels = [0, 50, 100, 150, 200, 300, 400, 500]
    for i in range(len(bps) - 1):
        if bps[i] <= c <= bps[i + 1]:
            return math.ceil(round((levels[i + 1] - levels[i]) / (bps[i + 1] - bps[i]) * (c - bps[i])
                                   + levels[i], 9))
    raise AssertionError(c)


def test_daily_aqi_real_station(dongsi: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    wide, long = dongsi
    d = daily_aqi(long)
    assert len(d) == 1461  # 2013-03-01 .. 2017-02-28, every day reported
    assert d["date"].min() == pd.Timestamp("2013-03-01") and d["date"].max() == pd.Timestamp("2017-02-28")
    # missing stays missing: days without enough hours are insufficient, never AQI 0
    assert (d["aqi"] == 0).sum() == 0
    insufficient = d[d["status"] == "insufficient"]
    assert len(insufficient) > 0 and insufficient["aqi"].isna().all()
    assert (d.loc[d["aqi"].isna(), "status"] == "insufficient").all()
    # heavy pollution (AQI > 200, 重度污染 and above) is found, and it is a real share of winter days
    heavy = d[d["aqi"] > 200]
    assert set(heavy["category_zh"]) == {"重度污染", "严重污染"}
    assert 150 < len(heavy) < 400
    assert heavy["date"].dt.month.isin([10, 11, 12, 1, 2, 3]).mean() > 0.7  # 77 % at Dongsi
    # the Beijing red-alert episode of December 2015 is severe (严重污染)
    assert d.loc[d["date"] == "2015-12-01", "category_zh"].item() == "严重污染"

    # A hand-computed day: 2013-03-06, all 24 hours of every pollutant present.
    rows = wide[(wide["year"] == 2013) & (wide["month"] == 3) & (wide["day"] == 6)]
    assert len(rows) == 24 and rows[list(UCI)].notna().all().all()
    pm25 = statistics.fmean(rows["PM2.5"])  # 206.8333
    hand = {
        "pm25": _hand_iaqi(pm25, [0, 35, 75, 115, 150, 250, 350, 500]),
        "pm10": _hand_iaqi(statistics.fmean(rows["PM10"]), [0, 50, 150, 250, 350, 420, 500, 600]),
        "so2": _hand_iaqi(statistics.fmean(rows["SO2"]), [0, 50, 150, 475, 800, 1600, 2100, 2620]),
        "no2": _hand_iaqi(statistics.fmean(rows["NO2"]), [0, 40, 80, 180, 280, 565, 750, 940]),
        "co": _hand_iaqi(statistics.fmean(rows["CO"]) / 1000, [0, 2, 4, 14, 24, 36, 48, 60]),
        "o3_1h": _hand_iaqi(max(rows["O3"]), [0, 160, 200, 300, 400, 800, 1000, 1200]),
        "o3_8h": _hand_iaqi(max(statistics.fmean(rows["O3"].iloc[h - 7:h + 1]) for h in range(7, 24)),
                            [0, 100, 160, 215, 265, 800]),
    }
    got = d[d["date"] == "2013-03-06"].iloc[0]
    assert {k: int(got[f"iaqi_{k}"]) for k in hand} == hand
    assert got["aqi"] == max(hand.values()) == 257  # 200 + 100 * (206.833 - 150) / 100 = 256.8 -> 257
    assert got["primary"] == "pm25" and got["category_zh"] == "重度污染" and got["status"] == "complete"

    # A summer ozone day: 2015-05-25, primary pollutant O3 8-hour, AQI exactly 200 (still 中度污染).
    got = d[d["date"] == "2015-05-25"].iloc[0]
    assert got["c_o3_8h"] == pytest.approx(264.125)
    assert got["aqi"] == 200 and got["primary"] == "o3_8h" and got["category_zh"] == "中度污染"


def test_daily_validity_rules() -> None:
    hours = pd.date_range("2024-07-01", periods=48, freq="h")
    pm = pd.DataFrame({"entity": "s", "property": "pm25", "time": hours, "value": 50.0})
    pm = pm.drop(index=range(24, 29))  # day 2 keeps 19 hours: below the 20 required
    d = daily_aqi(pm)
    assert d["status"].tolist() == ["partial", "insufficient"]
    assert d["aqi"].iloc[0] == 69  # 50 + 50 * 15 / 40 = 68.75 -> 69
    assert pd.isna(d["aqi"].iloc[1])
    assert d["hours_pm25"].tolist() == [24, 19]
    assert daily_aqi(pm, require_all=True)["aqi"].isna().all()
    # O3 8-hour: 13 valid windows only -> not valid unless its maximum exceeds 160 µg/m³
    o3 = pd.DataFrame({"entity": "s", "property": "o3", "time": hours[:24], "value": 100.0})
    o3.loc[o3["time"].dt.hour >= 18, "value"] = np.nan  # windows ending 21:00..24:00 have < 6 hours
    d = daily_aqi(o3, min_hours=18)
    assert np.isnan(d["c_o3_8h"].iloc[0])
    o3["value"] = o3["value"] * 2  # 200 µg/m³ > 160: the maximum stands with fewer windows
    d = daily_aqi(o3, min_hours=18)
    assert d["c_o3_8h"].iloc[0] == 200 and d["iaqi_o3_8h"].iloc[0] == 137


def test_frame_input_errors() -> None:
    obs = pd.DataFrame({"entity": "s", "property": "pm25", "time": ["2024-01-01 00:00"], "value": [-5.0]})
    with pytest.raises(InputError, match="negative concentration"):
        daily_aqi(obs)
    assert hourly_aqi(obs, invalid="missing")["aqi"].isna().all()
    with pytest.raises(InputError, match="lacks column"):
        daily_aqi(obs.drop(columns="time"))
    bad_unit = obs.assign(value=5.0, unit="furlong")
    with pytest.raises(InputError, match=r"'furlong'.*cannot be converted"):
        daily_aqi(bad_unit)
    with pytest.raises(InputError, match="unknown unit 'zorkmid'"):
        daily_aqi(bad_unit.assign(unit="zorkmid"))
    with pytest.raises(InputError, match="non-numeric"):
        hourly_aqi(obs.assign(value="high"))


def test_hourly_aqi_units_and_o3_moving_mean() -> None:
    hours = pd.date_range("2024-07-01", periods=8, freq="h", tz="UTC")
    obs = pd.DataFrame({"entity": "s", "property": "o3", "time": hours, "value": 200.0, "unit": "µg/m³"})
    co = pd.DataFrame({"entity": "s", "property": "co", "time": hours, "value": 8000.0, "unit": "µg/m³"})
    h = hourly_aqi(pd.concat([obs, co]))
    h = h.dropna(subset=["aqi"])
    assert h["time"].iloc[0] == pd.Timestamp("2024-07-01 08:00")  # converted to Beijing time
    # CO 8,000 µg/m³ = 8 mg/m³ on the 1-hour table: 50 + 50 * 3 / 5 = 80
    assert (h["iaqi_co"] == 80).all()
    # O3 8-hour moving mean needs 6 hours: NA for the first 5 hours, then 137
    assert h["iaqi_o3_8h"].isna().sum() == 5 and (h["iaqi_o3_8h"].dropna() == 137).all()
    assert (h["iaqi_o3_1h"] == 100).all()


def test_hourly_aqi_hours_without_readings_have_no_aqi() -> None:
    """The O3 8-hour moving mean must not give an AQI to hours in which nothing was measured."""
    import pandas as pd

    from citytwin.twin.aqi import hourly_aqi

    times = pd.date_range("2024-01-01 00:00", periods=10, freq="h")
    obs = pd.DataFrame({"entity": "s1", "property": "o3", "time": times, "value": 90.0, "unit": "µg/m³"})
    out = hourly_aqi(obs)
    measured = out["time"].isin(times.tz_localize("Asia/Shanghai")) if out["time"].dt.tz is not None else \
        out["time"].isin(times)
    assert out.loc[measured, "aqi"].notna().all()
    assert out.loc[~measured, "aqi"].isna().all() and (~measured).sum() > 0
