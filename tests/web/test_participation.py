"""Participation in the browser (issue 17), Chromium driven by Playwright against ``citytwin serve`` on the
demo workspace: a resident comments on a plan at a point placed on the map and votes, and reports a
problem through the web form (Open311); an official sees the complaint, routes it and closes it; the
demand map shows it. HTML and script in the texts are shown as text, never run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from tests.participation.test_topics import ZH
from tests.web.conftest import Server

COMMENT = '<img src=x onerror="window.__xss=1"><b>More benches</b> here'
REPORT = "<script>window.__xss=2</script> Loud work at night"


def _click_map_centre(page: Any) -> None:
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def _open_tab(w: Any) -> None:
    # sign-in ends by adding the cases layer, then showing the map view: wait for both before switching
    w.page.wait_for_function("window.citytwin.map.getLayer('part-cases') !== undefined && "
                             "document.querySelector('#tabs button.active').dataset.view === 'map'")
    w.page.click('#tabs button[data-view="participation"]')
    w.page.wait_for_selector("#part-detail[data-consultation]", timeout=30_000)


def test_resident_comments_votes_reports_and_official_closes(web_server: Server, new_page: Any,
                                                             screenshots: Path) -> None:
    srv = web_server
    with httpx.Client(base_url=srv.url, headers=srv.headers("admin"), timeout=30) as c:
        cfg = c.get("/participation/v1/config").json()
        x0, y0, x1, y1 = cfg["bbox"]  # the demo city's extent (its street network)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        plan = {"type": "Polygon", "coordinates": [[[cx - 0.004, cy - 0.002], [cx + 0.004, cy - 0.002],
                                                    [cx + 0.004, cy + 0.002], [cx - 0.004, cy + 0.002],
                                                    [cx - 0.004, cy - 0.002]]]}
        r = c.post("/consultations", json={
            "title": "Renewal of the harbour block", "starts": "2020-01-01T00:00:00Z", "ends": "2100-01-01T00:00:00Z",
            "plan": plan, "documents": ["Plan description (PDF)"],
            "questions": [{"kind": "vote", "text": "Do you support the plan?", "options": ["yes", "no"]}]})
        assert r.status_code == 201, r.text
        con = r.json()
        assert c.post("/consultations/residents/resident/verify").status_code == 200

    # the resident: comment at a point of the plan, vote, report a problem
    w = new_page()
    w.sign_in("resident")
    page = w.page
    _open_tab(w)
    page.click(f'#part-list button[data-consultation="{con["id"]}"]')
    page.wait_for_selector(f'#part-detail[data-consultation="{con["id"]}"]')
    page.wait_for_function("window.citytwin.map.getSource('part-plan') !== undefined")
    w.wait_map()
    page.click("#part-place")
    _click_map_centre(page)
    page.wait_for_function("document.getElementById('part-where').dataset.placed")
    page.fill("#part-comment-text", COMMENT)
    page.click("#part-comment-submit")
    page.wait_for_selector("#part-comments .comment-text")
    shown = page.locator("#part-comments .comment-text").last
    assert shown.text_content() == COMMENT  # shown as text
    assert page.locator("#part-comments img, #part-comments b").count() == 0
    page.click('#part-questions button[data-option="yes"]')
    page.wait_for_selector("#part-questions .answered")
    assert "yes" in page.locator("#part-questions .answered").text_content()
    page.wait_for_function("document.getElementById('part-results')?.textContent.includes('yes: 1, no: 0')")
    page.select_option("#part-service", "noise")
    page.fill("#part-report-text", REPORT)
    page.click("#part-report-place")
    _click_map_centre(page)
    page.wait_for_function("document.getElementById('part-report-where').dataset.placed")
    page.click("#part-report-submit")
    page.wait_for_selector("#part-report-result[data-request]")
    rid = page.locator("#part-report-result").get_attribute("data-request")
    assert page.evaluate("window.__xss") is None
    assert page.locator("#part-cases").count() == 0  # residents do not handle cases
    page.wait_for_function("window.citytwinParticipation.entities.features.some("
                           f"f => f.properties.id === 'urn:ngsi-ld:ServiceRequest:{rid}')")
    page.screenshot(path=str(screenshots / "participation_resident.png"))

    with httpx.Client(base_url=srv.url, headers=srv.headers("admin"), timeout=30) as c:
        res = c.get(f"/consultations/{con['id']}/results").json()
        assert res["questions"][0]["counts"] == {"yes": 1, "no": 0}
        (feat,) = res["comment_map"]["features"]
        lon, lat = feat["geometry"]["coordinates"]
        assert cx - 0.004 < lon < cx + 0.004 and cy - 0.002 < lat < cy + 0.002  # placed inside the plan
        assert feat["properties"]["text"] == COMMENT
        req = c.get(f"/open311/v2/requests/{rid}.json").json()[0]
        assert req["service_code"] == "noise" and req["description"] == REPORT
        assert req["agency_responsible"] == "environment"

    # the official (integrator): sees the complaint, routes it, closes it
    o = new_page()
    o.sign_in("operator")
    _open_tab(o)
    op = o.page
    row = f'#part-cases tr[data-case="{rid}"]'
    op.wait_for_selector(row)
    assert op.locator(f"{row} td").nth(4).text_content() == REPORT
    op.fill(f"{row} input.dept", "construction")
    op.click(f"{row} button.assign")
    op.wait_for_function(f"document.querySelector('{row} td:nth-child(4)')?.textContent === 'construction'")
    op.click(f"{row} button.close")
    op.wait_for_function(f"document.querySelector('{row} td:nth-child(3)')?.textContent === 'closed'")
    # the demand map shows it
    op.click("#part-demand")
    op.wait_for_selector("#part-demand-table td")
    cells = op.evaluate("window.citytwinParticipation.demand.features.map(f => f.properties)")
    assert any(c["by_service"].get("noise", 0) >= 1 for c in cells)
    assert op.evaluate("window.citytwin.map.getLayer('part-demand') !== undefined")
    op.screenshot(path=str(screenshots / "participation_official.png"))
    assert not [e for e in w.errors + o.errors if "favicon" not in e], w.errors + o.errors

    with httpx.Client(base_url=srv.url, headers=srv.headers("admin"), timeout=30) as c:
        case = c.get(f"/cases/{rid}").json()
        assert case["status"] == "closed" and case["department"] == "construction"
        assert [h["kind"] for h in case["history"]] == ["opened", "assign", "status"]
        assert [h["actor"] for h in case["history"][1:]] == ["operator", "operator"]


def test_resident_draws_an_area_comment(web_server: Server, new_page: Any, screenshots: Path) -> None:
    """Drawing mode (MapLibre only): clicks add corners and the shape shows while drawing, Esc cancels, a
    double-click closes the area; the area comment is posted as a Polygon and drawn on the comments layer
    (fill + outline, rendered features); the results panel shows the comments' topics; no console error,
    no request to another host."""
    import json

    srv = web_server
    with httpx.Client(base_url=srv.url, headers=srv.headers("admin"), timeout=30) as c:
        x0, y0, x1, y1 = c.get("/participation/v1/config").json()["bbox"]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        plan = {"type": "Polygon", "coordinates": [[[cx - 0.004, cy - 0.002], [cx + 0.004, cy - 0.002],
                                                    [cx + 0.004, cy + 0.002], [cx - 0.004, cy + 0.002],
                                                    [cx - 0.004, cy - 0.002]]]}
        r = c.post("/consultations", json={"title": "Green corridor", "starts": "2020-01-01T00:00:00Z",
                                           "ends": "2100-01-01T00:00:00Z", "plan": plan})
        assert r.status_code == 201, r.text
        con = r.json()
        for text, _ in ZH:  # the planted themes of test_topics: the results panel shows their topics
            assert c.post(f"/consultations/{con['id']}/comments", json={"text": text}).status_code == 201

    w = new_page()
    w.sign_in("resident")
    page = w.page
    _open_tab(w)
    page.click(f'#part-list button[data-consultation="{con["id"]}"]')
    page.wait_for_selector(f'#part-detail[data-consultation="{con["id"]}"]')
    page.wait_for_function("window.citytwin.map.getSource('part-plan') !== undefined")
    w.wait_map()
    box = page.locator("#map").bounding_box()
    mx, my = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    # Esc cancels a drawing
    page.click("#part-draw")
    page.mouse.click(mx - 50, my - 30)
    page.wait_for_function("window.citytwinParticipation.drawing?.corners.length === 1")
    page.keyboard.press("Escape")
    assert page.evaluate("window.citytwinParticipation.drawing") is None
    assert page.locator("#part-where").get_attribute("data-placed") is None
    # three corners by clicks, shown while drawing; a double-click adds the fourth and closes the area
    page.click("#part-draw")
    for dx, dy in ((-60, -40), (60, -40), (60, 40)):
        page.mouse.click(mx + dx, my + dy)
    page.wait_for_function("window.citytwinParticipation.drawing?.corners.length === 3")
    w.wait_map()
    assert page.evaluate("window.citytwin.map.queryRenderedFeatures({layers: ['part-draw-fill']}).length") >= 1
    page.mouse.dblclick(mx - 60, my + 40)
    page.wait_for_function("document.getElementById('part-where').dataset.placed")
    drawn = json.loads(page.locator("#part-where").get_attribute("data-placed"))
    ring = drawn["coordinates"][0]
    assert drawn["type"] == "Polygon" and len(ring) == 5 and ring[0] == ring[-1]
    assert page.evaluate("window.citytwinParticipation.drawing") is None
    page.fill("#part-comment-text", "Trees along this stretch")
    page.click("#part-comment-submit")
    page.wait_for_selector("#part-comments .comment-text")
    # the area is on the comments layer: fill and outline rendered at the drawn place
    page.wait_for_function("window.citytwin.map.queryRenderedFeatures({layers: ['part-areas-fill']}).length > 0")
    rendered = page.evaluate("window.citytwin.map.queryRenderedFeatures({layers: ['part-areas-fill', "
                             "'part-areas-line']}).map(f => [f.layer.id, f.properties.type])")
    assert {layer for layer, _ in rendered} == {"part-areas-fill", "part-areas-line"}
    assert {t for _, t in rendered} == {"ConsultationComment"}
    # the results panel (the latest answer: 25 comments, 1 on the map): topics with their terms and shares
    page.wait_for_function("document.getElementById('part-results-summary')?.textContent.includes('25 (1 ')")
    page.wait_for_selector("#part-topics .topic")
    shown = page.locator("#part-topics .topic-terms").all_text_contents()
    assert len(shown) >= 2 and any("公园" in t for t in shown) and any("停车" in t for t in shown)
    page.screenshot(path=str(screenshots / "participation_area_comment.png"))
    with httpx.Client(base_url=srv.url, headers=srv.headers("admin"), timeout=30) as c:
        (feat,) = c.get(f"/consultations/{con['id']}/comments.geojson").json()["features"]
        assert feat["geometry"] == drawn and feat["properties"]["text"] == "Trees along this stretch"
    assert not w.blocked, w.blocked
    assert not [e for e in w.errors if "favicon" not in e], w.errors
