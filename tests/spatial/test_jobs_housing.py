"""D6 job-housing balance: hand-computed cases, and the Helsinki extract with documented proxies."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from citytwin.foundation.errors import InputError
from citytwin.spatial.jobs_housing import jobs_housing, min_commute


def test_min_commute_by_hand():
    d = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]])
    # homes 2,0,0; jobs 0,1,1: one commuter goes 1, one goes 2 -> mean 1.5
    assert min_commute(np.array([2.0, 0, 0]), np.array([0.0, 1, 1]), d) == pytest.approx(1.5)
    # totals are equalised: jobs scaled to the number of homes
    assert min_commute(np.array([1.0, 1.0, 0]), np.array([0.0, 0, 10.0]), d) == pytest.approx(1.5)


def _buildings():
    # two 100 m x 100 m footprints in Helsinki (EPSG:3067), 2 storeys each: one home block, one office block
    g = gpd.GeoDataFrame({"osm_id": [1, 2, 3], "use": ["residential", "nonresidential", "residential"],
                          "building:levels": ["2", "2", None]},
                         geometry=[box(385000, 6672000, 385100, 6672100), box(386000, 6672000, 386100, 6672100),
                                   None], crs=3067)
    return g


def test_balance_by_hand():
    r = jobs_housing(_buildings(), resolution=9, m2_per_home=100, m2_per_job=50)
    # 20,000 m2 floor area each: 200 homes, 400 jobs
    assert r.indices["homes"] == pytest.approx(200, rel=1e-3)
    assert r.indices["jobs"] == pytest.approx(400, rel=1e-3)
    assert r.indices["jhr"] == pytest.approx(2.0, rel=1e-6)
    # homes and jobs in different cells: the dissimilarity index is 1 (all jobs would have to move)
    assert r.indices["dissimilarity"] == pytest.approx(1.0)
    assert r.indices["t_min_km"] == pytest.approx(r.indices["t_random_km"], rel=1e-6)
    assert r.report["dropped"] == {"buildings_without_geometry": 1}
    assert set(r.cells["balance"].round(6)) == {0.0}


def test_helsinki(helsinki):
    r = jobs_housing(helsinki["buildings"], helsinki["pois"])
    ind = r.indices
    # central Helsinki is a job center: more jobs than homes under any of the documented proxies
    assert ind["jhr"] > 1
    assert 0 < ind["dissimilarity"] < 1
    assert 0 < ind["t_min_km"] <= ind["t_random_km"]
    assert "building:levels" in " ".join(r.report["notes"])
    # without 'use' it is derived from 'building' exactly as the OSM reader does
    again = jobs_housing(helsinki["buildings"].drop(columns="use"), helsinki["pois"])
    assert again.indices == ind
    with pytest.raises(InputError, match="use"):
        jobs_housing(helsinki["buildings"].drop(columns=["use", "building"]))
    with pytest.raises(InputError, match="empty area"):
        jobs_housing(helsinki["buildings"].iloc[0:0])
