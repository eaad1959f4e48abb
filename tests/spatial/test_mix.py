"""D3 functional mix: REFERENCES.md values and momepy side by side on the real Helsinki POIs."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.errors import InputError
from citytwin.spatial.grid import point_cells
from citytwin.spatial.mix import NON_ACTIVITY, composite_label, entropy, functional_mix, simpson_rows


def test_reference_entropy():
    # REFERENCES.md "Mix entropy [V]": shares (0.5, 0.3, 0.2)
    assert entropy([0.5, 0.3, 0.2], 3) == pytest.approx(0.93723, abs=5e-6)
    assert entropy([0.5, 0.3, 0.2], 5) == pytest.approx(0.63976, abs=5e-6)
    assert simpson_rows(np.array([[5, 3, 2]]))[0] == pytest.approx(0.38)


def test_k_is_the_classification_size():
    pts = gpd.GeoDataFrame({"category": ["a"] * 5 + ["b"] * 3 + ["c"] * 2},
                           geometry=gpd.points_from_xy([24.94] * 10, [60.17] * 10), crs=4326)
    m3 = functional_mix(pts, classes=["a", "b", "c"])
    m5 = functional_mix(pts, classes=["a", "b", "c", "d", "e"])
    assert m3["entropy_norm"].iloc[0] == pytest.approx(0.93723, abs=5e-6)
    assert m5["entropy_norm"].iloc[0] == pytest.approx(0.63976, abs=5e-6)
    assert m5["gini_simpson"].iloc[0] == pytest.approx(0.62)


def test_against_momepy_on_helsinki(helsinki):
    import momepy
    from libpysal import graph

    pois = helsinki["pois"]
    m = functional_mix(pois, resolution=9).set_index("cell")
    a = pois[~pois["category"].isin(NON_ACTIVITY)].copy()
    a["cell"] = point_cells(a, 9)
    # momepy's Graph.apply returns values in the graph's id order: sort by cell so it equals the index
    a = a.sort_values("cell", kind="stable").reset_index(drop=True)
    g = graph.Graph.build_block_contiguity(a["cell"]).assign_self_weight()
    sh = momepy.shannon(a["category"], g, categorical=True, categories=m.attrs["classes"])
    gs = momepy.simpson(a["category"], g, categorical=True, gini_simpson=True)
    per = pd.DataFrame({"cell": a["cell"], "sh": sh.to_numpy(), "gs": gs.to_numpy()}).groupby("cell").first()
    assert len(per) == len(m) > 20
    np.testing.assert_allclose(per["sh"].reindex(m.index), m["entropy"], atol=1e-12)
    np.testing.assert_allclose(per["gs"].reindex(m.index), m["gini_simpson"], atol=1e-12)
    # momepy's entropy is not normalised: ours divides by ln K, K = the classification size
    np.testing.assert_allclose(m["entropy_norm"], m["entropy"] / np.log(len(m.attrs["classes"])))


def test_labels():
    assert composite_label(pd.Series({"shop": 0.6, "office": 0.4})) == "single:shop"
    assert composite_label(pd.Series({"shop": 0.4, "office": 0.3, "park": 0.1, "x": 0.2})) == \
        "composite:shop+office+x"
    assert composite_label(pd.Series({k: 0.1 for k in "abcdefghij"})) == "mixed"


def test_zone_blocks_and_bad_input(helsinki):
    pois = helsinki["pois"].head(300).copy()
    pois["block"] = np.arange(len(pois)) % 3
    m = functional_mix(pois, zone_col="block")
    assert sorted(m["cell"]) == [0, 1, 2]
    assert m["n_pois"].sum() == int((~pois["category"].isin(NON_ACTIVITY)).sum())
    empty = functional_mix(pois.iloc[0:0])
    assert len(empty) == 0 and "no POIs" in " ".join(empty.attrs["report"]["notes"])
    with pytest.raises(InputError, match="coordinate reference system"):
        functional_mix(pois.set_crs(None, allow_override=True))
    with pytest.raises(InputError, match="category"):
        functional_mix(pois.drop(columns="category"))
    with pytest.raises(InputError, match="at least 2 classes"):
        entropy([1.0], 1)
    # mixed CRS: the same POIs in a projected CRS give the same cells
    a = functional_mix(helsinki["pois"], resolution=9)
    b = functional_mix(helsinki["pois"].to_crs(3067), resolution=9)
    assert a["cell"].tolist() == b["cell"].tolist()
    np.testing.assert_allclose(a["entropy"], b["entropy"])
