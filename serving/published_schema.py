"""The OpenAPI document at ``/docs.json``: BentoML's, with what its generator cannot say.

BentoML builds the document from the endpoints' signatures; it has no place for a
required request body, for answers given before a request reaches BentoML (401 from the
token check, 413 and 415 from :mod:`serving.guards`), or for the bearer token itself. A
client (or schemathesis) reading it would take a request without a body for valid, and
never expect a 413. This middleware adds those to the document BentoML answers.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from serving.guards import ASGIApp, Message, Receive, Scope, Send
from serving.openapi_examples import ANSWERS, DESCRIPTION, REQUESTS, TITLE
from serving.schemas import ErrorResponse

DOCS = "/docs.json"
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def complete_schema(
    spec: dict[str, Any], endpoints: Collection[str], token_required: bool, max_body_bytes: int
) -> dict[str, Any]:
    """``spec`` with our title, description and version, and on every endpoint: a request
    and an answer example, a required JSON body, the 413 / 415 answers, the 404 for an
    unknown store or category, the 503 of /events, and (with a token) the bearer scheme
    and 401."""
    from features.version import package_version

    info = spec.setdefault("info", {})
    info.update(title=TITLE, description=DESCRIPTION, version=package_version())
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["ErrorResponse"] = ErrorResponse.model_json_schema()
    answers = {
        "404": _error("Unknown store_id or category"),
        "413": _error(f"Body over {max_body_bytes:,} bytes (OMNI_MAX_BODY_BYTES)"),
        "415": _error("Body not sent as Content-Type: application/json"),
    }
    if token_required:
        answers["401"] = _error("Missing or wrong bearer token")
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path in endpoints:
        operation = spec["paths"][path]["post"]
        operation["requestBody"]["required"] = True
        body = operation["requestBody"].setdefault("content", {})
        body.setdefault("application/json", {})["example"] = REQUESTS[path]
        answer = operation["responses"]["200"].setdefault("content", {})
        answer.setdefault("application/json", {})["example"] = ANSWERS[path]
        operation["responses"].update(answers)
        if path == "/events":
            operation["responses"]["503"] = _error(
                "Live events not taken now (the reason in detail); nothing was kept: retry"
            )
        if token_required:
            operation["security"] = [{"bearer": []}]
    return spec


class PublishedSchema:
    """Rewrites BentoML's answer to ``GET /docs.json`` with :func:`complete_schema`."""

    def __init__(self, app: ASGIApp, endpoints: Collection[str]) -> None:
        from features.settings import get_settings

        settings = get_settings()
        self.app = app
        self.endpoints = frozenset(endpoints)
        self.token_required = bool(settings.api_token)
        self.max_body_bytes = settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != DOCS or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def send_completed(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            assert start is not None
            body = b"".join(chunks)
            if start["status"] == 200:
                spec = complete_schema(
                    json.loads(body), self.endpoints, self.token_required, self.max_body_bytes
                )
                body = json.dumps(spec).encode()
            headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_completed)
