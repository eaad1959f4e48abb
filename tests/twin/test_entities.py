"""Entity model and message validation (citytwin.twin.entities): every rejection reason, unit conversion."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.errors import InputError
from citytwin.twin import entities as E
from citytwin.twin import feeds as F

NOW_US = E.parse_time_us("2026-01-01T00:00:00Z")
AQ = "urn:ngsi-ld:AirQualityObserved:Beijing-Dongsi"
TF = "urn:ngsi-ld:TrafficFlowObserved:sz-1"
REG = {AQ: E.EntityRef("AirQualityObserved", 116.417, 39.929), TF: E.EntityRef("TrafficFlowObserved", 114.0, 22.5),
       "urn:ngsi-ld:EnergyMeter:m1": E.EntityRef("EnergyMeter", None, None)}


@pytest.fixture()
def parser() -> E.MessageParser:
    return E.MessageParser(REG.get, now_us=lambda: NOW_US, max_payload=4096)


def _parse(parser, doc, topic="citytwin/AirQualityObserved/Beijing-Dongsi/attrs"):
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return parser.parse(topic, raw)


def test_good_message_converts_units_and_keeps_missing(parser):
    res = _parse(parser, {"observedAt": "2015-12-01T08:00:00+08:00", "pm25": 301, "co": {"value": 3100, "unitCode": "GQ"},
                          "no2": {"type": "Property", "value": 0.08, "unit": "mg/m3"}, "o3": None,
                          "temperature": {"value": -1.5, "unitCode": "CEL"}})
    assert res.rejects == []
    got = {o.property: (o.value, o.unit) for o in res.observations}
    assert got["pm25"] == (301.0, "µg/m³")
    assert got["co"][0] == pytest.approx(3.1) and got["co"][1] == "mg/m³"  # 3100 µg/m³ = 3.1 mg/m³
    assert got["no2"][0] == pytest.approx(80.0)  # 0.08 mg/m³ = 80 µg/m³
    assert got["o3"] == (None, "µg/m³")  # missing stays missing, never 0
    assert got["temperature"] == (-1.5, "℃")
    assert {o.observed_at_us for o in res.observations} == {E.parse_time_us("2015-12-01T00:00:00Z")}
    assert res.observations[0].lon == 116.417


@pytest.mark.parametrize(("payload", "reason"), [
    (b'{"observedAt": "2015-12-01T00:00:00Z", "pm25": 1', "malformed_json"),
    (b'\xff\xfe', "malformed_json"),
    (b'"just a string"', "not_an_object"),
    (b'{"observedAt": "2099-01-01T00:00:00Z", "pm25": 1}', "future_time"),
    (b'{"observedAt": "2015-12-01T00:00:00", "pm25": 1}', "bad_time"),  # no timezone
    (b'{"observedAt": 1449000000, "pm25": 1}', "bad_time"),
    (b'{"pm25": 1}', "missing_time"),
    (b'{"type": "TrafficFlowObserved", "observedAt": "2015-12-01T00:00:00Z", "pm25": 1}', "type_mismatch"),
])
def test_message_level_rejections(parser, payload, reason):
    res = _parse(parser, payload)
    assert [r.reason for r in res.rejects] == [reason]
    assert res.observations == []


def test_unknown_entity_and_oversized_and_bad_topic(parser):
    res = _parse(parser, {"observedAt": "2015-12-01T00:00:00Z", "pm25": 1},
                 topic="citytwin/AirQualityObserved/Nowhere/attrs")
    assert [r.reason for r in res.rejects] == ["unknown_entity"]
    big = json.dumps({"observedAt": "2015-12-01T00:00:00Z", "pm25": 1, "name": "x" * 5000}).encode()
    res = _parse(parser, big)
    assert [r.reason for r in res.rejects] == ["oversized"] and "5" in res.rejects[0].detail
    res = parser.parse("other/topic", b"{}")
    assert [r.reason for r in res.rejects] == ["bad_topic"]


@pytest.mark.parametrize(("attr", "reason"), [
    ({"pm25": "high"}, "wrong_type"),
    ({"pm25": True}, "wrong_type"),  # a JSON boolean is not a concentration
    ({"pm25": {"value": [1, 2]}}, "wrong_type"),
    ({"pm25": {"value": 12, "unit": "furlongs per fortnight"}}, "unknown_unit"),
    ({"pm25": {"value": 12, "unit": "km/h"}}, "unknown_unit"),  # wrong dimension
    ({"pm25": {"value": 12, "unitCode": "XYZ"}}, "unknown_unit"),
    ({"noise": 55}, "unknown_property"),
])
def test_attribute_level_rejections_keep_the_rest(parser, attr, reason):
    res = _parse(parser, {"observedAt": "2015-12-01T00:00:00Z", "pm10": 50, **attr})
    assert [r.reason for r in res.rejects] == [reason]
    assert [(o.property, o.value) for o in res.observations] == [("pm10", 50.0)]


def test_traffic_bool_and_custom_type_units(parser):
    res = parser.parse("citytwin/TrafficFlowObserved/sz-1/attrs", json.dumps(
        {"observedAt": "2018-01-01T00:00:00Z", "intensity": 42, "congested": True, "occupancy": {"value": 35, "unit": "%"},
         "averageVehicleSpeed": {"value": 10, "unit": "m/s"}}).encode())
    assert res.rejects == []
    got = {o.property: o.value for o in res.observations}
    assert got == {"intensity": 42.0, "congested": 1.0, "occupancy": pytest.approx(0.35),
                   "averageVehicleSpeed": pytest.approx(36.0)}
    # a custom entity type (not a Smart Data Model) accepts any numeric property with a known unit
    res = parser.parse("citytwin/EnergyMeter/m1/attrs", json.dumps(
        {"observedAt": "2018-01-01T00:00:00Z", "energy": {"value": 5, "unit": "kWh"}, "power": 3}).encode())
    assert [(o.property, o.unit) for o in res.observations] == [("energy", "kWh")]
    assert [r.reason for r in res.rejects] == ["unknown_unit"]


def test_batch_topic_and_per_attribute_time(parser):
    doc = [{"id": AQ, "observedAt": "2015-12-01T00:00:00Z", "pm25": 10},
           {"id": AQ, "pm10": {"value": 20, "observedAt": "2015-12-01T01:00:00Z"}},
           {"id": "urn:ngsi-ld:AirQualityObserved:Nope", "observedAt": "2015-12-01T00:00:00Z", "pm25": 1},
           "junk"]
    res = parser.parse("citytwin/batch", json.dumps(doc).encode())
    assert [(o.property, E.format_time_us(o.observed_at_us)) for o in res.observations] == [
        ("pm25", "2015-12-01T00:00:00Z"), ("pm10", "2015-12-01T01:00:00Z")]
    assert sorted(r.reason for r in res.rejects) == ["not_an_object", "unknown_entity"]
    res = parser.parse("citytwin/batch", json.dumps([{"observedAt": "2015-12-01T00:00:00Z", "pm25": 1}]).encode())
    assert [r.reason for r in res.rejects] == ["missing_id"]


def test_topic_convention_roundtrip():
    t = E.topic_for(AQ)
    assert t == "citytwin/AirQualityObserved/Beijing-Dongsi/attrs"
    assert E.parse_topic(t) == (AQ, "AirQualityObserved")
    assert E.parse_topic("citytwin/batch") == (None, None)
    with pytest.raises(InputError):
        E.parse_topic("citytwin/a/b")
    with pytest.raises(InputError):
        E.topic_for("Dongsi")


def test_validate_entity():
    e = E.validate_entity({"id": AQ, "type": "AirQualityObserved", "name": {"type": "Property", "value": "Dongsi"},
                           "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [116.4, 39.9]}}})
    assert (e.lon, e.lat, e.static) == (116.4, 39.9, {"name": "Dongsi"})
    for bad in ({"id": "Dongsi", "type": "AirQualityObserved"}, {"id": AQ},
                {"id": AQ, "type": "TrafficFlowObserved"},
                {"id": AQ, "type": "AirQualityObserved", "location": {"type": "Point", "coordinates": [200, 95]}}):
        with pytest.raises(InputError):
            E.validate_entity(bad)


def test_beijing_long_and_messages(shared_data):
    raw = pd.read_csv(shared_data / "air_beijing_multisite" / "PRSA_Data_Dongsi_20130301-20170228.csv", nrows=48)
    long = F.beijing_long(raw)
    # 12 mapped columns per row; missing values stay NaN rows (count equals the CSV's own counts)
    assert len(long) == 48 * 12
    pm25 = long[long.property == "pm25"]
    assert pm25["value"].notna().sum() == raw["PM2.5"].notna().sum()
    # 2013-03-01 00:00 Beijing time is 2013-02-28 16:00 UTC
    assert long["time"].min() == pd.Timestamp("2013-02-28T16:00:00Z")
    assert long.loc[long.property == "windDirection", "value"].iloc[0] == 337.5  # first row wd = NNW
    msgs = list(F.messages_from_long(long))
    assert len(msgs) == 48
    doc = json.loads(msgs[0][2])
    assert doc["co"] == {"value": 300.0, "unit": "µg/m³"} and doc["observedAt"] == "2013-02-28T16:00:00Z"
    batched = list(F.messages_from_long(long, per_message=10))
    assert len(batched) == 5 and batched[0][1] == "citytwin/batch"
    parser = E.MessageParser({F.beijing_entity("Dongsi").id: F.beijing_entity("Dongsi").ref}.get)
    res = [parser.parse(t, p) for _, t, p in msgs]
    assert sum(len(r.rejects) for r in res) == 0
    obs = [o for r in res for o in r.observations]
    assert len(obs) == len(long)
    co = [np.nan if o.value is None else o.value for o in obs if o.property == "co"]
    np.testing.assert_allclose(co, raw["CO"].to_numpy() / 1000.0)  # µg/m³ -> mg/m³


def test_replay_schedule():
    t = np.array([0, 3_600_000_000, 3_600_000_000, 7_200_000_000])
    assert F.replay_schedule(t, 3600).tolist() == [0.0, 1.0, 1.0, 2.0]
    assert F.replay_schedule(t, 0).tolist() == [0.0] * 4
