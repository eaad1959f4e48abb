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
