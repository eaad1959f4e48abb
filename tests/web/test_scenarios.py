"""A simulation scenario beside reality in the twin view (issue 16), Chromium driven by Playwright against
``citytwin serve`` on the demo workspace, which holds the published scenarios ``helsinki-base`` and
``helsinki-closure`` (SUMO runs of central Helsinki): choosing one draws its road segments and detectors on the
map beside the live stations, with a legend, in English and Chinese; no request leaves the local server."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import httpx
from tests.web.conftest import Server


def _open_twin(w: Any) -> None:
    # sign-in ends by adding the cases layer, then showing the map view: wait for both before switching
    w.page.wait_for_function("window.citytwin.map.getLayer('part-cases') !== undefined && "
                             "document.querySelector('#tabs button.active').dataset.view === 'map'")
    w.page.click('#tabs button[data-view="twin"]')
    w.page.wait_for_selector("#twin-scenario option[value='helsinki-base']", state="attached", timeout=30_000)
    w.page.wait_for_selector("#twin-scenario", state="visible", timeout=30_000)


def test_scenario_beside_reality(web_server: Server, new_page: Any, screenshots: Path) -> None:
    srv = web_server
    with httpx.Client(base_url=srv.url, headers=srv.headers("admin"), timeout=30) as c:
        listed = {s["scenario"]: s for s in c.get("/twin/v1/scenarios").json()}
        ents = c.get("/ngsi-ld/v1/entities", params={"scenario": "helsinki-base", "type": "TrafficFlowObserved",
                                                     "limit": 10000, "options": "keyValues"}).json()
    assert {"helsinki-base", "helsinki-closure"} <= set(listed) and listed["helsinki-base"]["status"] == "complete"
    located = [e for e in ents if "location" in e]
    assert len(located) == listed["helsinki-base"]["entities"] > 0
    # every road segment carries its SUMO shape as a line (Helsinki's network is geo-referenced)
    edges = [e for e in located if ":edge:" in e["id"]]
    assert edges and all(e["shape"]["type"] == "LineString" and len(e["shape"]["coordinates"]) >= 2 for e in edges)

    w = new_page("en")
    w.sign_in("admin")
    page = w.page
    _open_twin(w)
    labels = page.locator("#twin-scenario option").all_text_contents()
    assert labels[0] == "reality only" and "helsinki-base (complete)" in labels
    page.wait_for_function("window.citytwin.map.getLayer('twin-stations') !== undefined")
    page.select_option("#twin-scenario", "helsinki-base")
    page.wait_for_selector("#scenario-legend[data-scenario='helsinki-base']", timeout=30_000)
    legend = page.locator("#scenario-legend")
    assert legend.get_attribute("data-features") == str(len(located))
    assert legend.get_attribute("data-lines") == str(len(edges))
    assert "simulated speed (km/h)" in legend.text_content()
    assert page.locator("#map-legend .swatch").count() > 6  # the live stations' AQI legend stays beside it
    info = page.locator("#scenario-info").text_content()
    n_det = listed["helsinki-base"]["detectors"]
    assert f"{listed['helsinki-base']['edges']} road segments and {n_det} detectors; complete" in info
    w.wait_map()
    drawn = page.evaluate("""() => {
        const m = window.citytwin.map;
        const f = m.queryRenderedFeatures({layers: ['twin-scenario-edges', 'twin-scenario-edge-points',
                                                    'twin-scenario-detectors']});
        const e = f.filter((x) => x.properties.kind === 'edge');
        return {edges: e.length, lines: e.filter((x) => x.layer.type === 'line'
                                                  && x.geometry.type.endsWith('LineString')).length,
                detectors: f.filter((x) => x.properties.kind === 'detector').length,
                coloured: f.filter((x) => x.properties.speed >= 0).length,
                stations: m.getLayoutProperty('twin-stations', 'visibility') ?? 'visible',
                live: window.citytwin.twinGeojson.features.length};
    }""")
    # the map was fitted to the scenario: its features are drawn, the road segments as lines, most with a
    # simulated speed
    assert drawn["edges"] > 0 and drawn["lines"] == drawn["edges"] and drawn["detectors"] > 0
    assert drawn["coloured"] > 0
    # the closure coloured by the change against the base run (mean speed, then CO2, per segment): the
    # segments both runs have are compared, and some changed
    page.select_option("#twin-scenario", "helsinki-closure")
    page.wait_for_selector("#scenario-legend[data-scenario='helsinki-closure']", timeout=30_000)
    page.select_option("#twin-scenario-by", "dspeed:helsinki-base")
    page.wait_for_selector("#scenario-legend[data-by='dspeed:helsinki-base']", timeout=30_000)
    assert "change in the run's mean speed against helsinki-base" in page.locator("#scenario-legend").text_content()
    w.wait_map()
    change = page.evaluate("""() => {
        const f = window.citytwin.map.queryRenderedFeatures({layers: ['twin-scenario-edges']});
        const d = f.map((x) => x.properties.dspeed).filter((v) => typeof v === 'number');
        return {lines: f.length, compared: d.length, changed: d.filter((v) => Math.abs(v) > 0.1).length};
    }""")
    assert change["lines"] > 0 and change["compared"] > 0 and change["changed"] > 0
    page.screenshot(path=str(screenshots / "scenario-change.png"))
    page.select_option("#twin-scenario-by", "dco2:helsinki-base")
    page.wait_for_selector("#scenario-legend[data-by='dco2:helsinki-base']", timeout=30_000)
    w.wait_map()
    assert page.evaluate("""window.citytwin.map.queryRenderedFeatures({layers: ['twin-scenario-edges']})
        .filter((x) => typeof x.properties.dco2 === 'number').length""") > 0
    assert drawn["stations"] == "visible" and drawn["live"] == 3  # reality (the live stations) stays on the map
    # back to reality: the scenario's features go
    page.select_option("#twin-scenario", "")
    page.wait_for_function("document.getElementById('scenario-legend') === null")
    assert page.evaluate("window.citytwinScenarios.state.geojson.features.length") == 0
    w.wait_map()
    assert page.evaluate("window.citytwin.map.queryRenderedFeatures("
                         "{layers: ['twin-scenario-edges', 'twin-scenario-detectors']}).length") == 0
    assert w.blocked == [] and w.errors == []

    z = new_page("zh")
    z.sign_in("admin")
    _open_twin(z)
    z.page.select_option("#twin-scenario", "helsinki-closure")
    z.page.wait_for_selector("#scenario-legend[data-scenario='helsinki-closure']", timeout=30_000)
    assert "仿真车速" in z.page.locator("#scenario-legend").text_content()
    assert "仅现实" in z.page.locator("#twin-scenario option").first.text_content()
    assert "已完成" in z.page.locator("#scenario-info").text_content()
    assert z.blocked == [] and z.errors == []
    assert all(u.startswith(srv.url) or u.startswith(("blob:", "data:")) for u in w.requests + z.requests)


def test_running_scenario_is_followed(web_server: Server, new_page: Any) -> None:
    """A scenario that says ``running`` (as ``sim run --publish NAME --live`` writes it; here a copy of the demo's
    base run whose record names this test's process) is listed so and read again until it is complete."""
    from citytwin.workflows.simulation_twin import META, scenario_root, write_meta

    twin = web_server.root / "twin"
    folder = scenario_root(twin, "live-copy")
    shutil.copytree(scenario_root(twin, "helsinki-base"), folder)
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        assert len(meta["seeds"]) == 2
        write_meta(folder, {**meta, "scenario": "live-copy", "status": "running", "pid": os.getpid(),
                            "host": socket.gethostname(), "simulated_s": 120.0, "seed_running": 1, "seeds_done": 0})
        w = new_page("en")
        w.sign_in("admin")
        _open_twin(w)
        assert "live-copy (running)" in w.page.locator("#twin-scenario option").all_text_contents()
        w.page.select_option("#twin-scenario", "live-copy")
        w.page.wait_for_selector("#scenario-info[data-status='running']", timeout=30_000)
        info = w.page.locator("#scenario-info").text_content()
        assert "running; simulated time up to 120 s" in info and "Seed 1 of 2 running." in info
        write_meta(folder, {**meta, "scenario": "live-copy", "status": "complete"})  # the run finished
        w.page.wait_for_selector("#scenario-info[data-status='complete']", timeout=30_000)
        assert w.page.locator("#twin-scenario").input_value() == "live-copy"
        assert w.blocked == [] and w.errors == []
    finally:
        shutil.rmtree(folder, ignore_errors=True)
