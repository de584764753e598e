"""The served OpenAPI document: BentoML's own (generated here by BentoML for a service with the
scoring contract and the other forms pydantic writes the 3.1 way) is not valid OpenAPI 3.0;
converted, it is, keeps every constraint, and documents the error shape the request checks and the
contract's validation really answer. The ASGI middleware rewrites only that response."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field
from schemathesis.specs.openapi.definitions import OPENAPI_30

from api.openapi import document_refusals, openapi_30, schema_30
from api.request_checks import OVERLOADED, check_headers, parse_body
from credit_risk.contract import MAX_APPLICATIONS_PER_REQUEST, Application, ScoreResponse

# the official OpenAPI 3.0 JSON Schema (OAI's schemas/v3.0), as schemathesis ships it
OPENAPI_30_VALIDATOR = jsonschema.Draft4Validator(OPENAPI_30)
Applications = Annotated[
    list[Application], Field(min_length=1, max_length=MAX_APPLICATIONS_PER_REQUEST)
]


class Extra(BaseModel):
    """Forms the scoring contract does not use today, as pydantic writes them."""

    kind: Literal["x"] = "x"
    pair: tuple[int, str] | None = None
    ratio: float = Field(0.5, gt=0, lt=1, examples=[0.25])
    either: int | str = 0
    nested: Application | None = Field(None, description="A nested model, described.")


@pytest.fixture(scope="module")
def bentoml_document() -> dict[str, Any]:
    """The document BentoML serves for ``/score`` as the API declares it, plus ``Extra``."""
    import bentoml

    @bentoml.service
    class Probe:
        @bentoml.api(route="/score")
        async def score(self, applications: Applications, explain: bool = False) -> ScoreResponse:
            raise NotImplementedError

        @bentoml.api
        async def extra(self, extra: Extra) -> Extra:
            return extra

    document: dict[str, Any] = Probe.openapi_spec.asdict()
    return json.loads(json.dumps(document))  # as it goes over the wire


@pytest.fixture(scope="module")
def served(bentoml_document) -> dict[str, Any]:
    return document_refusals(openapi_30(bentoml_document), ("/score",))


def test_bentoml_document_is_not_openapi_30_and_the_served_one_is(bentoml_document, served):
    assert bentoml_document["openapi"].startswith("3.0")
    assert not OPENAPI_30_VALIDATOR.is_valid(bentoml_document)
    OPENAPI_30_VALIDATOR.validate(served)
    assert served["openapi"] == "3.0.3"
    assert bentoml_document["openapi"].startswith("3.0")  # the input is left as it was


def test_contract_constraints_survive_the_conversion(served):
    schemas = served["components"]["schemas"]
    fields = schemas["Application"]["properties"]
    assert fields["request_id"] == {
        "default": None,
        "description": Application.model_fields["request_id"].description,
        "title": "Request Id",
        "nullable": True,
        "maxLength": 64,
        "minLength": 1,
        "pattern": "^[A-Za-z0-9._:-]+$",
        "type": "string",
    }
    assert fields["home"]["enum"] == ["rent", "owner", "parents", "priv", "other", "ignore", None]
    assert fields["income"]["nullable"] is True
    assert (fields["income"]["minimum"], fields["income"]["maximum"]) == (0, 100_000)
    assert fields["amount"]["minimum"] == 0
    assert fields["amount"]["exclusiveMinimum"] is True
    assert schemas["Application"]["additionalProperties"] is False
    body = served["paths"]["/score"]["post"]["requestBody"]
    assert body["required"] is True
    applications = body["content"]["application/json"]["schema"]["properties"]["applications"]
    assert (applications["minItems"], applications["maxItems"]) == (1, 256)


def test_other_31_forms_pydantic_writes(served):
    extra = served["components"]["schemas"]["Extra"]["properties"]
    assert extra["kind"]["enum"] == ["x"]
    assert "const" not in extra["kind"]
    assert extra["pair"]["items"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert (extra["pair"]["minItems"], extra["pair"]["maxItems"], extra["pair"]["nullable"]) == (
        2,
        2,
        True,
    )
    assert extra["ratio"]["example"] == 0.25
    assert extra["ratio"]["exclusiveMaximum"] is True
    assert extra["ratio"]["maximum"] == 1
    assert extra["either"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert extra["nested"]["allOf"] == [{"$ref": "#/components/schemas/Application"}]
    assert extra["nested"]["nullable"] is True


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": ["string", "null"]}, {"type": "string", "nullable": True}),
        ({"type": ["integer", "string"]}, {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
        ({"type": "null"}, {"nullable": True, "enum": [None]}),
        (
            {"anyOf": [{"type": "null"}, {"type": "integer"}, {"type": "string"}]},
            {"nullable": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
        ),
        (
            {"oneOf": [{"type": "number", "minimum": 1}, {"type": "null"}]},
            {"nullable": True, "type": "number", "minimum": 1},
        ),
        ({"exclusiveMinimum": 1, "minimum": 5}, {"minimum": 5}),
        ({"exclusiveMinimum": 5, "minimum": 1}, {"minimum": 5, "exclusiveMinimum": True}),
        ({"exclusiveMinimum": True, "minimum": 1}, {"minimum": 1, "exclusiveMinimum": True}),
        (
            {"$ref": "#/$defs/A", "description": "d"},
            {"allOf": [{"$ref": "#/components/schemas/A"}], "description": "d"},
        ),
        ({"type": "object", "required": []}, {"type": "object"}),
        ({"$schema": "x", "contentMediaType": "text/csv"}, {"x-contentMediaType": "text/csv"}),
        ({"properties": {"a": {"const": 1}}}, {"properties": {"a": {"enum": [1]}}}),
    ],
)
def test_schema_rewrites(schema, expected):
    assert schema_30(schema, {}) == expected


def test_defs_move_to_components():
    hoisted: dict[str, Any] = {}
    schema = {"$defs": {"A": {"const": 1}}, "items": {"$ref": "#/$defs/A"}}
    assert schema_30(schema, hoisted) == {"items": {"$ref": "#/components/schemas/A"}}
    assert hoisted == {"A": {"enum": [1]}}


def error_validator(document: dict[str, Any], status: str) -> jsonschema.Draft4Validator:
    """A validator for the body documented for ``status`` of ``POST /score``."""
    content = document["paths"]["/score"]["post"]["responses"][status]["content"]
    return jsonschema.Draft4Validator(
        {**content["application/json"]["schema"], "components": document["components"]}
    )


def test_every_refusal_is_documented_with_the_shape_it_has(served):
    responses = served["paths"]["/score"]["post"]["responses"]
    assert set(responses) >= {"200", "400", "413", "415", "503"}
    assert "Retry-After" in responses["503"]["headers"]
    problems = [
        parse_body(b'{"a":1,"a":2}')[1],
        parse_body(b"\xff")[1],
        check_headers({b"content-type": b"application/json", b"content-length": b"9" * 9}, 1),
        check_headers({b"content-type": b"text/plain"}, 1),
        OVERLOADED,
    ]
    validation_error = {  # what the contract's validation answers (pydantic's error list)
        "error": "1 validation error for Input",
        "detail": [
            {
                "type": "missing",
                "loc": ["applications", 0, "age"],
                "msg": "Field required",
                "url": "https://errors.pydantic.dev/2.14/v/missing",
            }
        ],
    }
    bodies = [(str(p.status), json.loads(p.body())) for p in problems if p is not None]
    for status, body in [*bodies, ("400", validation_error)]:
        error_validator(served, status).validate(body)
    with pytest.raises(jsonschema.ValidationError):  # what BentoML documented: a string detail
        error_validator(served, "400").validate({"error": "x", "detail": "a string"})
