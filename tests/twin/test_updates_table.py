"""Entity updates whose attributes all have one form (what devices and gateways send: every attribute a
``{"value", "unit"}`` object, or every one a bare number) are checked as one table per shape
(``UpdateBatch._take_all``); the readings, rejects and their order must still be what ``MessageParser`` gives
message by message, with odd values, units and forms planted in some columns."""

from __future__ import annotations

import json
import random
from collections import Counter

from tests.twin.test_updates_columns import _rejects, _rows  # the same comparison of results

from citytwin.foundation.properties import physical_range
from citytwin.foundation.timeseries import ingest as I
from citytwin.twin import entities as E
from citytwin.twin import updates as U
from citytwin.twin.columnar import BatchParser

NOW_US = E.parse_time_us("2026-01-01T00:00:00Z")
IDS = [f"urn:ngsi-ld:AirQualityObserved:S{i}" for i in range(12)]
REG = {e: E.EntityRef("AirQualityObserved", 116.0 + i / 10, 39.9) for i, e in enumerate(IDS)}
PROPS = ["pm25", "pm10", "so2", "no2", "co", "o3", "temperature", "atmosphericPressure", "relativeHumidity",
         "windSpeed", "windDirection", "precipitation"]
UNIT = {"co": "mg/m³", "temperature": "℃", "atmosphericPressure": "hPa", "relativeHumidity": "", "windSpeed": "m/s",
        "windDirection": "degree", "precipitation": "mm"}
# a value a device could send in a column (most in range) and the odd ones planted now and then
GOOD = [0.0, -0.0, 0.5, 3, 12.5, 80, None, 1e-300, 1]
ODD = [1e308, -50.0, 2**53 + 1, 2**70, 10**400, True, "12", [1], {"value": 1}, float("nan"), float("inf"),
       -float("inf"), 1e6]
OTHER_UNITS = ["µg/m³", "mg/m³", "GQ", "furlong", "", 5, None]


def _ranges(name: str) -> tuple[float | None, float | None] | None:
    """The registry's ranges, with one property open (inf and 1e308 are then in range but not finite) and one
    open above."""
    if name == "precipitation":
        return None
    if name == "windSpeed":
        return (0, None)
    return physical_range(name)


def _batch(rng: random.Random) -> list[tuple[str, bytes]]:
    """Messages of 12 updates of one shape; per batch one form (objects or bare numbers), per column now and then
    another unit (the same for the whole column), and one kind of oddity planted here and there: a value, a
    reading's unit, an object of another form."""
    props = rng.sample(PROPS, rng.randint(2, 8))
    bare = rng.random() < 0.3
    col_unit = {p: (rng.choice(OTHER_UNITS) if rng.random() < 0.1 else UNIT.get(p, "µg/m³")) for p in props}
    plant = rng.choice(["none", "value", "value", "unit", "form"])
    rate = rng.choice([0.001, 0.004, 0.02])
    code = rng.random() < 0.1  # unitCode instead of unit, for every object of the batch
    msgs = []
    for m in range(rng.randint(1, 40)):
        items = []
        for e in IDS:
            d: dict[str, object] = {"id": e, "observedAt": f"2015-12-01T{m % 24:02d}:00:00Z"}
            for p in props:
                odd = plant != "none" and rng.random() < rate
                v = rng.choice(ODD) if odd and plant == "value" else rng.choice(GOOD)
                if bare:
                    d[p] = v
                    continue
                u = rng.choice(OTHER_UNITS) if odd and plant == "unit" else col_unit[p]
                d[p] = {"value": v, "unitCode" if code else "unit": u}
                if odd and plant == "form":
                    d[p] = rng.choice([{"value": v, "unit": u, "type": "Property"}, {"value": v}, v,
                                       {"value": v, "unit": u, "observedAt": "2015-11-30T00:00:00Z"},
                                       {"value": v, "unit": u, "unitCode": "GP"}])
            items.append(d)
        msgs.append(("citytwin/batch", json.dumps(items, ensure_ascii=False).encode()))
    return msgs


def test_a_table_of_updates_gives_what_each_message_gives_alone():
    rng = random.Random(25)
    ref = E.MessageParser(REG.get, now_us=lambda: NOW_US, ranges=_ranges)
    parser = BatchParser(REG.get, now_us=lambda: NOW_US, registry_version=lambda: 0, ranges=_ranges)
    outcome: Counter[str] = Counter()
    orig = U.UpdateBatch._take_all

    def counted(self, tname, keys, items, slots, fast):  # type: ignore[no-untyped-def]
        before = len(self.one)
        took = orig(self, tname, keys, items, slots, fast)
        outcome["table" if took and len(self.one) == before else "table, some columns one by one" if took
                else "by column"] += 1
        return took

    U.UpdateBatch._take_all = counted  # type: ignore[method-assign]
    try:
        taken = refused = 0
        for _ in range(150):
            msgs = _batch(rng)
            got = parser.parse_many(msgs)
            for (topic, raw), res in zip(msgs, got, strict=True):
                want = ref.parse(topic, raw)
                assert _rows(res.columns) == _rows(I._columns(want.observations)), raw
                assert _rejects(res) == _rejects(want), raw
                assert res.entities == want.entities, raw
                taken += len(want.observations)
                refused += len(want.rejects)
    finally:
        U.UpdateBatch._take_all = orig  # type: ignore[method-assign]
    # every way through was taken: whole tables, tables with a column sent one by one, and the fallback by column
    assert outcome["table"] > 30 and outcome["table, some columns one by one"] > 100 and outcome["by column"] > 100, \
        outcome
    assert taken > 100_000 and refused > 500


def test_the_common_value_is_what_the_general_checks_store():
    """``entities.common_value`` (the fast path of both parsers, reading by reading) answers only for what
    ``MessageParser._attribute`` stores, with the value it stores, also where a range is open (inf is then inside
    it but refused as not finite)."""
    p = E.MessageParser(REG.get, now_us=lambda: NOW_US, ranges=_ranges)
    etype = p.types["AirQualityObserved"]
    fast = p._fast_specs("AirQualityObserved", etype)
    assert fast is not None
    values = [*GOOD, *ODD, -1e308, 2**53, -(2**53), 2**53 + 2]
    forms = [lambda v: v] + [lambda v, u=u: {"value": v, "unit": u} for u in [*OTHER_UNITS, "mm", "m/s"]] + [
        lambda v: {"value": v, "unitCode": "GQ"}, lambda v: {"value": v},
        lambda v: {"value": v, "unit": "µg/m³", "observedAt": "2015-11-30T00:00:00Z"}]
    answered = 0
    for name, f in fast.items():
        for v in values:
            for form in forms:
                attr = form(v)
                res = E.ParseResult()
                p._attribute(res, IDS[0], "AirQualityObserved", etype, name, attr, 1_449_000_000_000_000, NOW_US,
                             1.0, 2.0)
                got = E.common_value(attr, f)
                if got is E.UNCOMMON:
                    continue
                answered += 1
                assert len(res.observations) == 1, (name, attr)
                o = res.observations[0]
                assert (o.value, o.unit, o.observed_at_us) == (got, f[0], 1_449_000_000_000_000), (name, attr)
                assert type(o.value) is type(got)
    assert answered > 300
