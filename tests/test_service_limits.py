"""issue 14 (Service), fast: the body limit setting, the bearer scheme parser, the error
detail format and the published schema's additions, on a small Starlette app in-process
(the real server is tested in test_service_guards.py and test_service_schema.py)."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from features.settings import get_settings
from serving.guards import JsonBodyGuard, bearer_token, describe_error
from serving.published_schema import complete_schema

JSON = {"Content-Type": "application/json"}


def test_max_body_bytes_is_a_setting():
    assert get_settings({}).max_body_bytes == 1_048_576
    assert get_settings({"OMNI_MAX_BODY_BYTES": "2048"}).max_body_bytes == 2048
    for bad in ("lots", "0", "-5"):
        with pytest.raises(ValueError, match="OMNI_MAX_BODY_BYTES"):
            get_settings({"OMNI_MAX_BODY_BYTES": bad})


def test_live_back_pressure_is_a_setting():
    assert get_settings({}).live_max_behind == 2_000
    assert get_settings({"OMNI_LIVE_MAX_BEHIND": "5000"}).live_max_behind == 5_000
    with pytest.raises(ValueError, match="OMNI_LIVE_MAX_BEHIND"):
        get_settings({"OMNI_LIVE_MAX_BEHIND": "0"})


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"bytes": len(await request.body())})


@pytest.fixture
def guarded(monkeypatch):
    """An echo endpoint behind JsonBodyGuard, its limit taken from OMNI_MAX_BODY_BYTES=64."""
    monkeypatch.setenv("OMNI_MAX_BODY_BYTES", "64")
    app = Starlette(routes=[Route("/score", _echo, methods=["POST"])])
    return TestClient(JsonBodyGuard(app, paths={"/score"}))


def test_the_body_limit_comes_from_the_setting(guarded):
    at_limit = b"{" + b" " * 62 + b"}"
    r = guarded.post("/score", content=at_limit, headers=JSON)
    assert r.status_code == 200 and r.json() == {"bytes": 64}
    over = guarded.post("/score", content=at_limit + b" ", headers=JSON)
    assert over.status_code == 413 and over.headers["connection"] == "close"
    assert over.json() == {
        "error": "request body too large",
        "detail": "at most 64 bytes (OMNI_MAX_BODY_BYTES)",
    }
    # no Content-Length: the body streams in chunks and is cut off at the limit
    chunked = guarded.post("/score", content=iter([b"{", b" " * 40, b" " * 40, b"}"]), headers=JSON)
    assert chunked.status_code == 413
    assert guarded.post("/score", content=iter([b"{}"]), headers=JSON).json() == {"bytes": 2}


def test_only_json_is_accepted(guarded):
    for content_type in ("text/plain", "multipart/form-data", "application/json-seq"):
        r = guarded.post("/score", content=b"{}", headers={"Content-Type": content_type})
        assert r.status_code == 415, content_type
    two = [("content-type", "application/json"), ("content-type", "multipart/form-data")]
    assert guarded.post("/score", content=b"{}", headers=two).status_code == 415
    utf8 = {"Content-Type": "application/json; charset=utf-8"}
    assert guarded.post("/score", content=b"{}", headers=utf8).status_code == 200


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer abc", b"abc"),
        (b"bearer abc", b"abc"),
        (b"BEARER abc", b"abc"),
        (b"Bearer   abc", b"abc"),
        (b"Basic abc", None),
        (b"Bearerabc", None),
        (b"Bearer", None),
        (b"Bearer ", None),
        (b"abc", None),
    ],
)
def test_bearer_scheme_is_case_insensitive(header, token):
    # issue 14: RFC 7235 makes the auth scheme case-insensitive
    assert bearer_token(header) == token


def test_error_details_name_the_field_not_the_input():
    assert (
        describe_error({"loc": ["customer_ids", 3], "msg": "too long"})
        == "customer_ids[3]: too long"
    )
    assert describe_error({"loc": [], "msg": "Invalid JSON"}) == "body: Invalid JSON"


def test_the_published_schema_says_what_the_guards_do():
    def spec() -> dict:
        post = {"requestBody": {"content": {}}, "responses": {"200": {}, "400": {}}}
        return {"paths": {"/score": {"post": post}}, "components": {"schemas": {}}}

    open_ = complete_schema(spec(), ["/score"], token_required=False, max_body_bytes=1024)
    post = open_["paths"]["/score"]["post"]
    assert post["requestBody"]["required"] is True
    assert {"200", "400", "404", "413", "415"} == set(post["responses"])
    assert "1,024 bytes" in post["responses"]["413"]["description"]
    assert "securitySchemes" not in open_["components"] and "security" not in post
    closed = complete_schema(spec(), ["/score"], token_required=True, max_body_bytes=1024)
    post = closed["paths"]["/score"]["post"]
    assert "401" in post["responses"] and post["security"] == [{"bearer": []}]
    assert closed["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
