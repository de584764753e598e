"""The OpenAPI document served at ``/docs.json``, made readable by OpenAPI 3.0 tools.

BentoML labels its document ``3.0.2`` but writes its schemas the way pydantic 2 does, in JSON
Schema 2020-12 (OpenAPI 3.1) forms: ``anyOf: [..., {"type": "null"}]`` for an optional field,
numeric ``exclusiveMinimum``, and so on. OpenAPI 3.0 tools (schemathesis, client generators,
validators) then refuse the document or misread the contract. ``openapi_30`` rewrites those
forms into their 3.0 equivalents, and ``document_refusals`` documents what the request
checks and the contract's validation really answer (BentoML documents a 400 whose ``detail`` is
a string, and neither 413, 415 nor 503). ``api/score_handler.py`` serves the result at
``/docs.json``, built once per worker.
"""

from __future__ import annotations

import copy
from typing import Any

from credit_risk.contract import ErrorResponse

OPENAPI_VERSION = "3.0.3"
COMPONENTS = "#/components/schemas/"

# Every keyword an OpenAPI 3.0 Schema Object may hold; any other is kept as an ``x-`` extension
# (3.0 allows those anywhere), so a constraint 3.0 cannot express stays visible to a reader.
SCHEMA_30_KEYWORDS = frozenset(
    {
        "$ref",
        "title",
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "maxProperties",
        "minProperties",
        "required",
        "enum",
        "type",
        "not",
        "allOf",
        "oneOf",
        "anyOf",
        "items",
        "properties",
        "additionalProperties",
        "description",
        "format",
        "default",
        "nullable",
        "discriminator",
        "readOnly",
        "writeOnly",
        "example",
        "externalDocs",
        "deprecated",
        "xml",
    }
)
SUBSCHEMA = ("items", "additionalProperties", "not")
SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
DROPPED = frozenset({"$schema", "$id", "$comment"})  # meaningless inside an OpenAPI document

GUARDED_RESPONSES = {
    "400": "The body broke the contract: not UTF-8 or not JSON, nested too deep, a repeated "
    "key, an array too long, or a field of the wrong type, out of range or unknown; "
    "`detail` names each one.",
    "413": "Body over the size limit (declared or counted); the connection is closed.",
    "415": "Content type other than application/json.",
    "503": "Overloaded or the model stage unavailable: retry after `Retry-After` seconds.",
}


def openapi_30(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of an OpenAPI document whose schemas use only OpenAPI 3.0 forms."""
    converted = copy.deepcopy(document)
    converted["openapi"] = OPENAPI_VERSION
    hoisted: dict[str, Any] = {}
    components = converted.setdefault("components", {})
    components["schemas"] = {
        name: schema_30(schema, hoisted) for name, schema in components.get("schemas", {}).items()
    }
    converted["paths"] = _convert_schemas(converted.get("paths", {}), hoisted)
    for key in ("parameters", "requestBodies", "responses", "headers"):
        if key in components:
            components[key] = _convert_schemas(components[key], hoisted)
    for name, schema in hoisted.items():
        components["schemas"].setdefault(name, schema)
    return converted


def _convert_schemas(node: Any, hoisted: dict[str, Any]) -> Any:
    """Convert every ``schema`` below ``node`` (parameters, bodies, responses, headers)."""
    if isinstance(node, list):
        return [_convert_schemas(item, hoisted) for item in node]
    if not isinstance(node, dict):
        return node
    return {
        key: schema_30(value, hoisted) if key == "schema" else _convert_schemas(value, hoisted)
        for key, value in node.items()
    }


def schema_30(schema: Any, hoisted: dict[str, Any]) -> Any:
    """One JSON Schema (2020-12, as pydantic writes it) as an OpenAPI 3.0 Schema Object;
    ``$defs`` are moved into ``hoisted`` (for ``components.schemas``)."""
    if not isinstance(schema, dict):
        return schema
    schema = dict(schema)
    _null_alternatives(schema)  # before its alternatives are converted, {"type": "null"} too
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in SUBSCHEMA and isinstance(value, dict):
            out[key] = schema_30(value, hoisted)
        elif key in SUBSCHEMA_LISTS:
            out[key] = [schema_30(item, hoisted) for item in value]
        elif key in SUBSCHEMA_MAPS:
            out[key] = {name: schema_30(item, hoisted) for name, item in value.items()}
        elif key == "$ref":
            out[key] = value.replace("#/$defs/", COMPONENTS).replace("#/definitions/", COMPONENTS)
        elif key not in DROPPED:
            out[key] = value
    hoisted.update(out.pop("$defs", {}))
    hoisted.update(out.pop("definitions", {}))
    for rewrite in (_type_list, _const, _exclusive_bounds, _examples, _tuple_items):
        rewrite(out)
    if not out.get("required", True):
        del out["required"]  # 3.0 wants at least one name in a `required` list
    if out.get("nullable") and None not in out.get("enum", [None]):
        out["enum"] = [*out["enum"], None]  # in 3.0 an enum must list null to allow it
    if "$ref" in out and len(out) > 1:  # 3.0 ignores a $ref's siblings: keep them with allOf
        out["allOf"] = [{"$ref": out.pop("$ref")}, *out.get("allOf", [])]
    return {
        key if key in SCHEMA_30_KEYWORDS or key.startswith("x-") else f"x-{key}": value
        for key, value in out.items()
    }


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null" and len(schema) == 1


def _null_alternatives(schema: dict[str, Any]) -> None:
    """``anyOf``/``oneOf`` with a ``{"type": "null"}`` alternative -> ``nullable: true``."""
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if not options or not any(_is_null(option) for option in options):
            continue
        rest = [option for option in options if not _is_null(option)]
        schema["nullable"] = True
        del schema[key]
        if len(rest) > 1:
            schema[key] = rest
        elif rest and "$ref" in rest[0]:
            schema["allOf"] = [*rest, *schema.get("allOf", [])]
        elif rest:
            for name, value in rest[0].items():
                schema.setdefault(name, value)
        else:
            schema["enum"] = [None]


def _type_list(schema: dict[str, Any]) -> None:
    """``type: [a, "null"]`` -> ``type: a, nullable``; ``type: "null"`` -> ``enum: [null]``;
    several types -> ``anyOf`` of one type each."""
    types = schema.get("type")
    if isinstance(types, str):
        types = [types]
    if not isinstance(types, list):
        return
    if "null" in types:
        schema["nullable"] = True
        types = [name for name in types if name != "null"]
        if not types:
            schema["enum"] = [None]
    del schema["type"]
    if len(types) == 1:
        schema["type"] = types[0]
    elif types:
        schema["anyOf"] = [{"type": name} for name in types]


def _const(schema: dict[str, Any]) -> None:
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]


def _exclusive_bounds(schema: dict[str, Any]) -> None:
    """Numeric ``exclusiveMinimum: x`` -> ``minimum: x, exclusiveMinimum: true`` (and max)."""
    for exclusive, bound, stricter in (
        ("exclusiveMinimum", "minimum", max),
        ("exclusiveMaximum", "maximum", min),
    ):
        value = schema.get(exclusive)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if bound in schema and stricter(schema[bound], value) != value:
            del schema[exclusive]  # the inclusive bound is the stricter one
            continue
        schema[bound] = value
        schema[exclusive] = True


def _examples(schema: dict[str, Any]) -> None:
    examples = schema.pop("examples", None)
    if isinstance(examples, list) and examples and "example" not in schema:
        schema["example"] = examples[0]


def _tuple_items(schema: dict[str, Any]) -> None:
    """``prefixItems`` (a tuple) -> ``items`` of any of its item schemas; the length bounds
    pydantic writes beside it keep the arity."""
    prefix = schema.pop("prefixItems", None)
    if prefix and "items" not in schema:
        schema["items"] = prefix[0] if len(prefix) == 1 else {"anyOf": prefix}


def error_schemas() -> dict[str, Any]:
    """``ErrorResponse`` and what it refers to, as 3.0 component schemas."""
    hoisted: dict[str, Any] = {}
    schema = ErrorResponse.model_json_schema(ref_template=COMPONENTS + "{model}")
    hoisted["ErrorResponse"] = schema_30(schema, hoisted)
    return hoisted


def document_refusals(document: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """The POSTs on ``paths`` require their JSON body and document every refusal (400, 413,
    415, 503 with ``Retry-After``) with the shape all of them share."""
    documented = copy.deepcopy(document)
    documented.setdefault("components", {}).setdefault("schemas", {}).update(error_schemas())
    error = {"application/json": {"schema": {"$ref": COMPONENTS + "ErrorResponse"}}}
    for path in paths:
        operation = documented["paths"][path]["post"]
        operation.get("requestBody", {})["required"] = True
        responses = operation.setdefault("responses", {})
        for status, description in GUARDED_RESPONSES.items():
            responses[status] = {"description": description, "content": error}
        responses["503"]["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer", "minimum": 0},
            }
        }
    return documented
