"""The web operations center in a real browser (Debian Chromium + Playwright) against ``citytwin serve``.

Every page lets through only requests to the local server and records the rest; the tests assert
that none was made and that the console stayed free of errors.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import httpx
import numpy as np
import pytest

from citytwin.foundation.mqtt import MqttPublisher
from citytwin.twin.entities import topic_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AQ = "urn:ngsi-ld:AirQualityObserved:"


def _local_only(w: Any) -> None:
    local = w.server.url + "/"
    assert w.blocked == [], f"requests to other hosts: {w.blocked[:5]}"
    assert all(u.startswith((local, "blob:", "data:")) for u in w.requests)
    assert w.errors == [], f"console errors: {w.errors[:5]}"


def _map_pixels(w: Any) -> np.ndarray:
    """The map canvas as an RGB array (map controls hidden)."""
    from PIL import Image

    w.page.evaluate("document.querySelector('.maplibregl-control-container').style.display = 'none'")
    png = w.page.locator("#map canvas").screenshot()
    w.page.evaluate("document.querySelector('.maplibregl-control-container').style.display = ''")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _colours(img: np.ndarray) -> int:
    return len(np.unique(img.reshape(-1, 3), axis=0))


def test_map_drawn_from_workspace_layers_with_local_requests_only(new_page, web_server, screenshots):
    w = new_page()
    w.sign_in("admin")
    # the base map's tiles came from the workspace's own layers
    tiles = {u.split("/tiles/")[1].split("/")[0] for u in w.requests if "/tiles/" in u}
    assert {"helsinki_streets", "helsinki_buildings", "helsinki_landuse"} <= tiles
    drawn = _map_pixels(w)
    assert drawn.std() > 10 and _colours(drawn) > 50, "the map canvas is (nearly) uniform"
    w.page.screenshot(path=str(screenshots / "map.png"))
    # with every workspace layer switched off only the background is left: the drawing was the layers
    for box in w.page.locator("#layer-list input[type=checkbox]").all():
        if box.is_checked():
            box.uncheck()
    w.wait_map()
    w.page.wait_for_timeout(300)
    blank = _map_pixels(w)
    assert _colours(blank) <= 3, "switching every layer off should leave the plain background"
    # layer panel = spatial collections of the catalog
    cols = httpx.get(f"{web_server.url}/collections", headers=web_server.headers("admin")).json()["collections"]
    panel = set(w.page.eval_on_selector_all("#layer-list input", "els => els.map(e => e.dataset.layer)"))
    assert panel == {c["id"] for c in cols if c["geometry"]}
    # each layer on one line: name, swatch and classification side by side, none broken over two lines
    heights = w.page.eval_on_selector_all("#layer-list label", "els => els.map(e => e.getBoundingClientRect().height)")
    line = w.page.evaluate("parseFloat(getComputedStyle(document.querySelector('#layer-list label')).lineHeight)"
                           " || 1.2 * parseFloat(getComputedStyle(document.querySelector('#layer-list label')).fontSize)")
    assert heights and max(heights) < 1.6 * line, (heights, line)
    _local_only(w)


def test_clicking_a_city_shows_its_indicators(new_page, web_server, screenshots):
    from shapely.geometry import shape

    from citytwin.economy import data as econ_data

    w = new_page()
    w.sign_in("admin")
    w.page.click('#tabs button[data-view="economy"]')
    w.page.wait_for_function("window.citytwin.map.getSource('econ-cities') !== undefined", timeout=60_000)
    w.wait_map()
    view = httpx.get(f"{web_server.url}/views/economy", headers=web_server.headers("admin"), timeout=60).json()
    feat = next(f for f in view["cities"]["geojson"]["features"] if f["properties"]["city"] == "上海")
    pt = shape(feat["geometry"]).representative_point()
    x, y = w.page.evaluate("([lon, lat]) => { const p = window.citytwin.map.project([lon, lat]); return [p.x, p.y]; }",
                           [pt.x, pt.y])
    box = w.page.locator("#map canvas").bounding_box()
    w.page.mouse.click(box["x"] + x, box["y"] + y)
    w.page.wait_for_selector("#city-title", timeout=10_000)
    assert "上海" in w.page.inner_text("#city-title")
    # the chart holds Shanghai's scores of seed 000 Table 1, year by year
    t1 = econ_data.load("seed000_table1_digital_economy_vs_gdp").set_index("city").loc["上海"]
    years, values = w.page.evaluate("""() => { const o = echarts.getInstanceByDom(document.getElementById('chart-city'))
        .getOption(); return [o.xAxis[0].data, o.series[0].data]; }""")
    assert years == ["2018", "2019", "2020"]
    assert values == pytest.approx([t1[f"de_score_{y}"] for y in (2018, 2019, 2020)])
    w.page.wait_for_timeout(500)
    w.page.screenshot(path=str(screenshots / "economy.png"))
    _local_only(w)


def test_alert_published_to_the_broker_appears_within_5s_and_is_acknowledged_and_resolved(new_page, web_server, screenshots):
    w = new_page()
    w.sign_in("admin")
    w.page.click('#tabs button[data-view="twin"]')
    w.page.wait_for_selector("#twin-stations table", timeout=30_000)
    w.wait_map()
    # a polluted reading published by a sensor to the MQTT broker the server ingests from:
    # PM2.5 400 µg/m³ (IAQI 434 > 300: aqi_severe_1h)
    if web_server.broker is None:
        pytest.skip("Mosquitto not installed (scripts/setup.sh --test installs it)")
    host, port = web_server.broker
    received0 = httpx.get(f"{web_server.url}/health").json()["mqtt"]["received"]
    pub = MqttPublisher(host, port, client_id="web-test-sensor")  # the test account, from the environment
    t0 = time.monotonic()
    pub.publish(topic_for(AQ + "Dongsi"), json.dumps({"observedAt": "2015-12-01T09:00:00+08:00",
                                                      "pm25": 400.0}).encode())
    assert pub.wait_all(timeout=5)  # the broker has it (QoS 1)
    pub.close()
    w.page.wait_for_selector(".toast", timeout=5_000)
    w.page.wait_for_selector('.alert[data-alert]:has-text("Dongsi")', timeout=5_000)
    assert time.monotonic() - t0 < 5.0
    health = httpx.get(f"{web_server.url}/health").json()["mqtt"]
    assert health["received"] > received0 and health["failure"] is None  # it came through the broker
    alerts = httpx.get(f"{web_server.url}/twin/v1/alerts", params={"entity": AQ + "Dongsi"},
                       headers=web_server.headers("admin")).json()
    assert [a["rule"] for a in alerts] == ["aqi_severe_1h"]
    aid = alerts[0]["id"]
    # the station is coloured by its new AQI (level 6, 严重污染)
    w.page.wait_for_function(
        "window.citytwin.twinGeojson.features.some(f => f.properties.id.endsWith('Dongsi') "
        "&& f.properties.level === 6)", timeout=5_000)
    w.page.screenshot(path=str(screenshots / "twin.png"))
    alert = w.page.locator(f'.alert[data-alert="{aid}"]')
    alert.locator("button[data-act=ack]").click()
    w.page.wait_for_selector(f'.alert.acknowledged[data-alert="{aid}"]', timeout=5_000)
    w.page.locator(f'.alert[data-alert="{aid}"] button[data-act=resolve]').click()
    w.page.wait_for_selector(f'.alert.resolved[data-alert="{aid}"]', timeout=5_000)
    rec = httpx.get(f"{web_server.url}/twin/v1/alerts/{aid}", headers=web_server.headers("admin")).json()
    assert rec["status"] == "resolved" and rec["acknowledged_by"] == "admin"
    # the time slider goes back to the first hour: Dongsi's clean reading of that hour again
    w.page.evaluate("""() => { const s = document.getElementById('time-slider'); s.value = '0';
        s.dispatchEvent(new Event('input')); }""")
    w.page.wait_for_function("""() => [...document.querySelectorAll('#twin-stations tr')].some(
        tr => tr.textContent.includes('Dongsi') && tr.lastElementChild.textContent === '35')""", timeout=10_000)
    # forecasts beside actuals: persistence forecasts issued from the history, drawn next to the readings
    r = httpx.post(f"{web_server.url}/twin/v1/forecasts", params={"model": "persistence", "horizon": 3,
                                                                  "trainDays": 1, "entity": AQ + "Dongsi"},
                   headers=web_server.headers("operator"))
    assert r.status_code == 201, r.text
    w.page.select_option("#forecast-entity", AQ + "Dongsi")
    w.page.evaluate("document.getElementById('forecast-entity').dispatchEvent(new Event('change'))")
    w.page.wait_for_function("""() => echarts.getInstanceByDom(document.getElementById('chart-forecast'))
        .getOption().series.length === 2""", timeout=10_000)
    series = w.page.evaluate("""() => echarts.getInstanceByDom(document.getElementById('chart-forecast'))
        .getOption().series.map(s => [s.name, s.data.map(d => d[1])])""")
    assert series == [["actual", [35.0, 400.0]], ["forecast (persistence)", [400.0, 400.0, 400.0]]]
    _local_only(w)


def test_language_switches(new_page, screenshots):
    w = new_page()
    w.sign_in("admin")
    tab = w.page.locator('#tabs button[data-view="economy"]')
    assert tab.inner_text() == "Economy"
    w.page.select_option("#lang", "zh")
    w.page.wait_for_function("document.documentElement.lang === 'zh-CN'")
    assert tab.inner_text() == "经济"
    assert w.page.inner_text("#layers h3") == "图层"
    w.page.click('#tabs button[data-view="space"]')
    w.page.wait_for_selector("#space-centers table", timeout=30_000)
    w.page.wait_for_timeout(500)
    w.page.screenshot(path=str(screenshots / "space_zh.png"))
    w.page.select_option("#lang", "en")
    w.page.wait_for_function("document.documentElement.lang === 'en'")
    assert tab.inner_text() == "Economy"
    _local_only(w)


def test_job_progress_shown_in_the_browser(new_page, screenshots):
    w = new_page()
    w.sign_in("admin")
    w.page.click('#tabs button[data-view="space"]')
    # every progress value the page shows, as it shows it
    w.page.evaluate("""() => { window.seenProgress = []; new MutationObserver(() => {
        for (const b of document.querySelectorAll('#job-progress .progress > div')) window.seenProgress.push(b.style.width);
      }).observe(document.getElementById('job-progress'), {subtree: true, attributes: true, childList: true}); }""")
    w.page.click('button[data-process="spatial-structure"]', timeout=30_000)
    w.page.wait_for_selector('#job-progress [data-status="successful"]', timeout=120_000)
    text = w.page.inner_text("#job-progress")
    assert "spatial_centers v" in text and "spatial_mix v" in text
    seen = w.page.evaluate("window.seenProgress")
    assert seen[-1] == "100%" and len(set(seen)) >= 2
    w.page.wait_for_selector("#space-centers table", timeout=30_000)
    w.page.screenshot(path=str(screenshots / "space.png"))
    _local_only(w)


def test_role_without_clearance_does_not_see_the_sensitive_layer(new_page, web_server):
    w = new_page()
    w.sign_in("viewer")
    layers = set(w.page.eval_on_selector_all("#layer-list input", "els => els.map(e => e.dataset.layer)"))
    assert "helsinki_streets" in layers and "helsinki_buildings" not in layers
    assert not [u for u in w.requests if "helsinki_buildings" in u]
    assert httpx.get(f"{web_server.url}/tiles/helsinki_buildings/14/9327/4739.mvt",
                     headers=web_server.headers("viewer")).status_code == 403
    _local_only(w)
    # the public role may not read the twin: its tab is not shown
    p = new_page()
    p.sign_in("resident")
    assert p.page.locator('#tabs button[data-view="twin"]').is_hidden()
    assert p.page.locator('#tabs button[data-view="economy"]').is_visible()
    for path in ("/views/twin", "/reports/twin"):
        assert httpx.get(web_server.url + path, headers=web_server.headers("resident")).status_code == 403
    _local_only(p)


def test_catalog_view_lists_datasets_with_quality_and_lineage(new_page, web_server, screenshots):
    w = new_page()
    w.sign_in("admin")
    w.page.click('#tabs button[data-view="catalog"]')
    w.page.wait_for_selector("#catalog-table table", timeout=90_000)
    names = w.page.eval_on_selector_all("#catalog-table tbody tr td:first-child", "els => els.map(e => e.textContent)")
    cols = httpx.get(f"{web_server.url}/collections", headers=web_server.headers("admin")).json()["collections"]
    assert sorted(names) == sorted(c["id"] for c in cols)
    links = w.page.evaluate("""() => echarts.getInstanceByDom(document.getElementById('chart-lineage'))
        .getOption().series[0].links.map(l => [l.source, l.target])""")
    assert ["helsinki_pois", "helsinki_poi_per_h3"] in links
    w.page.wait_for_timeout(800)
    w.page.screenshot(path=str(screenshots / "catalog.png"))
    _local_only(w)


def test_twin_view_without_stations_says_how_to_feed_it(new_page):
    """A new workspace's twin has no station yet (``citytwin serve --demo``): the view says how to feed it
    and shows no empty time slider or forecast box (the page's request of the view answered as such)."""
    import json as js

    for lang, words in (("en", "citytwin twin replay"), ("zh", "接入数据")):
        w = new_page(lang)
        w.page.route("**/views/twin", lambda r: r.fulfill(status=200, content_type="application/json", body=js.dumps(
            {"view": "twin", "stations": [], "alerts": [], "at": None, "span": None})))
        w.sign_in("admin")
        w.page.click('#tabs button[data-view="twin"]')
        w.page.wait_for_selector("#twin-feed", timeout=30_000)
        assert words in w.page.inner_text("#twin-feed")
        assert w.page.locator("#twin-time").is_hidden() and w.page.locator("#twin-forecast").is_hidden()
        assert w.page.locator("#alert-list").is_visible()
        _local_only(w)
    # with stations (the live twin of these tests) both are shown
    w = new_page()
    w.sign_in("admin")
    w.page.click('#tabs button[data-view="twin"]')
    w.page.wait_for_selector("#twin-stations table", timeout=30_000)
    assert w.page.locator("#twin-time").is_visible() and w.page.locator("#twin-forecast").is_visible()
    assert w.page.locator("#twin-feed").count() == 0


def test_economy_charts_in_chinese_name_tiers_and_keep_labels_apart(new_page):
    w = new_page("zh")
    w.sign_in("admin")
    w.page.click('#tabs button[data-view="economy"]')
    w.page.wait_for_function("""() => { const c = echarts.getInstanceByDom(document.getElementById('chart-index'));
        return c && c.getOption().legend[0].data.length > 0; }""", timeout=60_000)
    legend = w.page.evaluate("""() => echarts.getInstanceByDom(document.getElementById('chart-index'))
        .getOption().legend[0].data""")
    assert legend and all(name.startswith("梯队 ") for name in legend), legend
    rank = w.page.evaluate("""() => { const o = echarts.getInstanceByDom(document.getElementById('chart-rankgap'))
        .getOption(); return [o.grid[0].right, o.series[0].labelLayout]; }""")
    assert rank[0] >= 90 and rank[1] == {"hideOverlap": True}  # room for the last labels; no label over another
    _local_only(w)


def _pdf_images(data: bytes) -> tuple[int, int]:
    import pypdf

    pdf = pypdf.PdfReader(io.BytesIO(data))
    return len(pdf.pages), sum(len(p.images) for p in pdf.pages)


def test_pdf_reports_hold_maps_and_charts(web_server, tmp_path):
    from typer.testing import CliRunner

    from citytwin.cli.main import app as cli

    r = httpx.get(f"{web_server.url}/reports/economy", params={"f": "pdf"}, headers=web_server.headers("admin"),
                  timeout=120)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    pages, images = _pdf_images(r.content)
    assert pages >= 2 and images >= 4  # rank scatter, city map, index bars, Dagum decomposition
    out = tmp_path / "space.pdf"
    res = CliRunner().invoke(cli, ["report", "space", "-w", str(web_server.root), "-u", "admin", "--out", str(out)])
    assert res.exit_code == 0, res.output
    pages, images = _pdf_images(out.read_bytes())
    assert pages >= 1 and images >= 3  # centers map, mix, coverage
