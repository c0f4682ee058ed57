"""Building blocks of the OpenAPI 3.1 document: JSON Schema pieces and operation parts.

``supervisor_api.openapi`` assembles the document; route modules that describe their own paths
(``history_routes``) build them from these, so every part of the document speaks alike.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def nullable(kind: str) -> Schema:
    return {"type": [kind, "null"]}


def obj(properties: dict[str, Schema], *, closed: bool = True) -> Schema:
    """An object with every property required; ``closed``: no other property allowed."""
    schema: Schema = {"type": "object", "properties": properties, "required": list(properties)}
    if closed:
        schema["additionalProperties"] = False
    return schema


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def array(item: Schema) -> Schema:
    return {"type": "array", "items": item}


TIME: Schema = {"type": "string", "format": "date-time"}
SECONDS: Schema = {"type": "number", "minimum": 0}
PERCENT: Schema = {"type": ["number", "null"], "minimum": 0, "maximum": 100}
COUNT: Schema = {"type": "integer", "minimum": 0}
TEXT: Schema = {"type": "string"}
OPTIONAL_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
OPTIONAL_SECONDS: Schema = {"type": ["number", "null"], "minimum": 0}

_ERRORS = {
    "400": "Bad input; `field` names it",
    "401": "No or invalid bearer token",
    "403": "The token's role does not allow this",
    "404": "Unknown id",
    "409": "Not possible in the current state",
}


def responses(ok: str, schema: Schema, *errors: str, ok_status: str = "200") -> Schema:
    """The success answer, then 401, 403 and ``errors``, each with the JSON error body."""
    answers: Schema = {
        ok_status: {"description": ok, "content": {"application/json": {"schema": schema}}}
    }
    for status in ("401", "403", *errors):
        answers[status] = {
            "description": _ERRORS.get(status, "Refused"),
            "content": {"application/json": {"schema": ref("Error")}},
        }
    return answers


def path_param(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def query(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


INTERVAL = [
    query("from", "Start of the interval (default: today's midnight)", {**TIME}),
    query("to", "End of the interval (default: now)", {**TIME}),
]
