"""Endpoint answers sent as one JSON body with its length.

Given a pydantic model, BentoML validates it and streams it as a chunked body: three
ASGI messages through every middleware (start, the body, an empty last part) and a
validation of output our own code built. An answer is small and complete when the
endpoint returns, so the endpoints return :func:`json_answer` instead: the same bytes
``Model(**fields).model_dump_json()`` gives (a test checks each endpoint), in two
messages with a ``Content-Length`` (issue 21: ~10% of /recommend's cost). The models stay
the endpoints' ``output_spec``: the published schema is unchanged.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
from pydantic import BaseModel
from starlette.responses import Response


class JsonAnswer(Response):
    media_type = "application/json"


def json_answer(model: type[BaseModel], **fields: Any) -> JsonAnswer:
    """``fields`` (plain Python values, nested models as dicts in their field order) as
    ``model``'s JSON. A field missing or extra is a programming error: TypeError."""
    names = model.model_fields
    if fields.keys() != names.keys():
        raise TypeError(f"{model.__name__} answer: fields {sorted(fields)} != {sorted(names)}")
    ordered = {name: fields[name] for name in names}
    return JsonAnswer(pydantic_core.to_json(ordered, inf_nan_mode="null"))
