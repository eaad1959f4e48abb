"""A6 openness profiles: weights configurable and recorded; the catalog's own profile from facts."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from citytwin.economy.openness import catalog_profile, score_profiles
from citytwin.foundation.errors import InputError

PROFILES = pd.DataFrame({"name": ["a", "b", "c"], "readiness": [80, 40, 60], "platform": [60, 50, 90],
                         "data": [70, 20, 50], "utilisation": [30, 10, 80]})


def test_equal_weights_by_default() -> None:
    s = score_profiles(PROFILES)
    assert s["score"].tolist() == pytest.approx([60.0, 30.0, 70.0])
    assert s["rank"].tolist() == [2, 3, 1]
    assert s.attrs["weights"] == {d: 0.25 for d in ("readiness", "platform", "data", "utilisation")}


def test_configured_weights_are_normalised_and_recorded() -> None:
    w = {"readiness": 1, "platform": 1, "data": 2, "utilisation": 1}
    s = score_profiles(PROFILES, weights=w)
    assert s["score"].tolist() == pytest.approx([(80 + 60 + 140 + 30) / 5, (40 + 50 + 40 + 10) / 5,
                                                 (60 + 90 + 100 + 80) / 5])
    assert s.attrs["weights"]["data"] == pytest.approx(0.4)


def test_bad_profiles() -> None:
    with pytest.raises(InputError, match="utilisation"):
        score_profiles(PROFILES.drop(columns="utilisation"))
    with pytest.raises(InputError, match=r"\[0, 100\]") as e:
        score_profiles(PROFILES.assign(data=[70, 120, 50]))
    assert e.value.row == 2 and e.value.field == "data"
    with pytest.raises(InputError, match="unknown openness dimension"):
        score_profiles(PROFILES, weights={"beauty": 1})


def _facts() -> list[dict]:
    full = {"licence": "CC BY 4.0", "description": "d", "source": "s", "department": "stats", "owner": "o"}
    return [
        {"name": "gdp", "classification": "public", "formats": ["parquet"], "updated": "2026-05-01",
         "used_by": 2, **full},
        {"name": "roads", "classification": "public", "formats": ["parquet"], "updated": "2020-01-01",
         "used_by": 0, **full},
        {"name": "people", "classification": "sensitive", "formats": ["parquet"], "department": "police"},
        {"name": "budget", "classification": "internal", "formats": ["xlsx"], "licence": None},
    ]


def test_catalog_profile_by_hand() -> None:
    p = catalog_profile(_facts(), now=datetime(2026, 6, 1, tzinfo=UTC))
    # readiness: licence 2/4, department 3/4 -> 62.5
    assert p.readiness == pytest.approx(100 * (0.5 + 0.75) / 2)
    # platform: public in open format 2/2; metadata completeness (1 + 1 + 1/5 + 0) / 4
    assert p.platform == pytest.approx(100 * (1.0 + (2 + 0.2) / 4) / 2)
    # data: public share 2/4, public updated within a year 1/2
    assert p.data == pytest.approx(100 * (0.5 + 0.5) / 2)
    # utilisation: public datasets used downstream 1/2
    assert p.utilisation == pytest.approx(50.0)
    assert p.score == pytest.approx((p.readiness + p.platform + p.data + p.utilisation) / 4)
    assert p.counts == {"datasets": 4, "public": 2}


def test_catalog_profile_edge_cases() -> None:
    empty = catalog_profile([])
    assert empty.score == 0 and empty.warnings
    only_private = catalog_profile([{"name": "x", "classification": "internal"}])
    assert only_private.utilisation == 0 and any("no public" in w for w in only_private.warnings)
    with pytest.raises(InputError, match="classification"):
        catalog_profile([{"name": "x", "classification": "secret"}])
