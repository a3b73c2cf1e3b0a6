"""Pure ASGI middlewares in front of the scoring endpoints: the bearer token, JSON bodies
of bounded size, and error answers in the shape the published schema gives them.

Every refusal is a JSON object ``{"error": <what>, "detail": <which field / what to do>}``,
the shape of BentoML's published ``InvalidArgument`` / ``NotFound`` schemas. They run
inside BentoML's own middlewares (access log, timeout) and outside its request parsing,
so a refused body is never parsed, and one over the size limit is never read.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_error(
    send: Send,
    status: int,
    error: str,
    detail: str,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """Answer ``status`` with ``{"error": error, "detail": detail}``."""
    body = json.dumps({"error": error, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def bearer_token(authorization: bytes) -> bytes | None:
    """The credentials of an ``Authorization: Bearer <token>`` header, None for any other
    scheme. The scheme is case-insensitive (RFC 7235: ``bearer`` and ``BEARER`` too)."""
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return token.strip(b" ") or None


class BearerAuth:
    """401 on ``paths`` unless ``Authorization: Bearer <token>`` carries the token (compared
    in constant time). No token configured: everything passes. Answered before the body is
    read."""

    def __init__(self, app: ASGIApp, paths: Collection[str], token: str | None = None) -> None:
        from features.settings import get_settings

        self.app = app
        self.paths = frozenset(paths)
        token = token if token is not None else get_settings().api_token
        self.expected = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.expected and scope["type"] == "http" and scope["path"] in self.paths:
            given = bearer_token(_header(scope, b"authorization") or b"")
            if given is None or not hmac.compare_digest(given, self.expected):
                await send_error(
                    send,
                    401,
                    "unauthorized",
                    "missing or wrong bearer token (Authorization: Bearer <token>)",
                    ((b"www-authenticate", b"Bearer"),),
                )
                return
        await self.app(scope, receive, send)


class JsonBodyGuard:
    """POSTs to ``paths`` carry JSON: 415 for any other media type (a form or multipart
    body is never parsed), 413 for a body over ``limit`` bytes (``OMNI_MAX_BODY_BYTES``),
    refused from its Content-Length before any of it is read, or, when it comes in chunks,
    as soon as it passes the limit. The body, read in full, is then handed on."""

    def __init__(self, app: ASGIApp, paths: Collection[str], limit: int | None = None) -> None:
        from features.settings import get_settings

        self.app = app
        self.paths = frozenset(paths)
        self.limit = limit if limit is not None else get_settings().max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        types = [v for k, v in scope["headers"] if k == b"content-type"]
        if len(types) != 1 or types[0].partition(b";")[0].strip().lower() != b"application/json":
            await send_error(
                send, 415, "unsupported media type", "send JSON with Content-Type: application/json"
            )
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        # the rest of the body stays unread: the connection closes after the answer
        await send_error(
            send,
            413,
            "request body too large",
            f"at most {self.limit:,} bytes (OMNI_MAX_BODY_BYTES)",
            ((b"connection", b"close"),),
        )


class ReadableErrors:
    """BentoML answers a request that fails validation with 400 and pydantic's error list
    as ``detail``; its published schema says ``detail`` is a string. On ``paths`` such
    answers become ``{"error": "invalid request", "detail": "k: Input should be ..."}``
    (field, then message; never the input)."""

    def __init__(self, app: ASGIApp, paths: Collection[str]) -> None:
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def send_readable(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] == 400:
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = readable_error(b"".join(chunks))
            headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_readable)


def readable_error(body: bytes) -> bytes:
    """BentoML's validation answer with ``detail`` as one string; other bodies unchanged."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body
    if not isinstance(answer, dict) or not isinstance(answer.get("detail"), list):
        return body
    detail = "; ".join(describe_error(e) for e in answer["detail"] if isinstance(e, dict))
    return json.dumps({"error": "invalid request", "detail": detail}).encode()


def describe_error(error: dict[str, Any]) -> str:
    """``customer_ids[3]: String should have at most 200 characters`` from a pydantic
    error (its location and message; "body" for the body as a whole)."""
    where = ""
    for part in error.get("loc") or ():
        where += f"[{part}]" if isinstance(part, int) else f"{'.' if where else ''}{part}"
    return f"{where or 'body'}: {error.get('msg', 'invalid')}"


def _header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower case), None when absent."""
    return next((v for k, v in scope["headers"] if k == name), None)
