"""The batch upsert's 201 body (docs/twin.md, "Session 17: a request's fixed cost")."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("ids", [[], ["urn:ngsi-ld:AirQualityObserved:Aotizhongxin"] * 3,
                                 ["urn:ngsi-ld:T:站点-1", 'urn:ngsi-ld:T:a"b\\\\c', "urn:ngsi-ld:T:\u0007\t/x", "urn:ngsi-ld:T:\U0001f600"]])
def test_an_upserts_201_body_is_the_one_jsonresponse_gave(ids: list[str]) -> None:
    """The batch upsert's 201 (the ids that passed) encoded by orjson: the bytes and headers of Starlette's
    ``JSONResponse`` (compact, UTF-8 as is), which it used before session 17."""
    from starlette.responses import JSONResponse

    from citytwin.service.ngsi import json_response

    new, old = json_response(ids, status_code=201), JSONResponse(ids, status_code=201)
    assert new.body == old.body and new.status_code == old.status_code
    assert sorted(new.raw_headers) == sorted(old.raw_headers)


class _Body(list):  # type: ignore[type-arg]
    """A decoded body that can be watched (a weak reference): a list, as the decoder gives it."""


@pytest.mark.parametrize("path,bad", [("/ngsi-ld/v1/entityOperations/upsert", False),
                                      ("/ngsi-ld/v1/entityOperations/upsert", True),
                                      ("/twin/v1/observations", False)])
def test_the_decoded_body_is_freed_after_the_response_is_sent(tmp_path, monkeypatch, path: str, bad: bool) -> None:
    """The batch upsert's (and a large observation body's) decoded body lives until the response's body has been
    sent, and is freed right after (session 18): the client does not wait for it. The answer is unchanged (201, or
    207 with the errors) and the readings stored."""
    import weakref

    import orjson
    from fastapi.testclient import TestClient

    from citytwin.service import ngsi
    from citytwin.service.app import create_app
    from citytwin.twin import feeds as F

    st = F.beijing_entity(sorted(F.BEIJING_STATIONS)[0])
    refs: list[weakref.ref[_Body]] = []

    def decode(raw: bytes) -> _Body:
        doc = _Body(orjson.loads(raw))
        refs.append(weakref.ref(doc))
        return doc

    monkeypatch.setattr(ngsi, "fast_decode", decode)
    monkeypatch.setattr(ngsi, "INLINE_BODY", 0)  # (observations: the worker thread's path, as a large body takes)
    app = create_app(tmp_path / "twin", auth=False)
    app.state.twin.register([st])
    seen: list[tuple[str, bool]] = []

    async def watched(scope, receive, send):  # type: ignore[no-untyped-def]
        async def send2(message):  # type: ignore[no-untyped-def]
            await send(message)
            if scope.get("method") == "POST" and message["type"] == "http.response.body":
                seen.append(("sent", bool(refs) and refs[-1]() is not None))
        await app(scope, receive, send2)
        if scope["type"] == "http" and scope.get("method") == "POST":
            seen.append(("after", bool(refs) and refs[-1]() is not None))

    items = [{"id": st.id, "type": "AirQualityObserved", "observedAt": f"2015-12-01T{h:02d}:00:00Z",
              "pm25": {"value": 10 + h, "unit": "µg/m³"}, "pm10": {"value": 5 if not bad else 1e9, "unit": "µg/m³"}}
             for h in range(20)]
    with TestClient(watched) as c:
        r = c.post(path, json=items)
        assert r.status_code == (207 if bad else 201)
        assert c.get(f"/ngsi-ld/v1/entities/{st.id}").json()["pm25"]["value"] == 29
    assert refs and seen == [("sent", True), ("after", False)]
    assert app.state.twin.stores.history.count()["rows"] == (20 if bad else 40)
