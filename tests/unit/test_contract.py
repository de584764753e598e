"""The contract refuses each class of bad input with the field and the reason."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from credit_risk.contract import (
    CONTRACT_FIELDS,
    MAX_APPLICATIONS_PER_REQUEST,
    Application,
    ScoreRequest,
    contract_document,
)


def errors_of(payload: dict) -> list[tuple[tuple, str]]:
    with pytest.raises(ValidationError) as caught:
        ScoreRequest.model_validate(payload)
    return [(tuple(e["loc"]), e["type"]) for e in caught.value.errors()]


@pytest.mark.parametrize(
    ("overrides", "field", "error_type"),
    [
        ({"age": "30"}, "age", "int_type"),
        ({"age": 30.5}, "age", "int_type"),
        ({"age": True}, "age", "int_type"),
        ({"expenses": "73"}, "expenses", "float_type"),
        ({"expenses": float("nan")}, "expenses", "finite_number"),
        ({"amount": float("inf")}, "amount", "finite_number"),
        ({"age": 17}, "age", "greater_than_equal"),
        ({"amount": 0}, "amount", "greater_than"),
        ({"income": -1.0}, "income", "greater_than_equal"),
        ({"price": 1e12}, "price", "less_than_equal"),
        ({"home": "castle"}, "home", "literal_error"),
        ({"records": None}, "records", "literal_error"),
        ({"age": ...}, "age", "missing"),
        ({"colour": "blue"}, "colour", "extra_forbidden"),
        ({"request_id": "has space"}, "request_id", "string_pattern_mismatch"),
    ],
)
def test_bad_field_is_reported_with_index_and_field(make_record, overrides, field, error_type):
    payload = {"applications": [make_record(), make_record(**overrides)]}
    assert ((("applications", 1, field), error_type)) in errors_of(payload)


def test_several_bad_items_each_report_their_index(make_record):
    payload = {"applications": [make_record(age="x"), make_record(), make_record(home=1)]}
    locations = {loc[:3] for loc, _ in errors_of(payload)}
    assert locations == {("applications", 0, "age"), ("applications", 2, "home")}


def test_cross_field_rule_seniority_within_age(make_record):
    with pytest.raises(ValidationError, match="seniority"):
        Application.model_validate(make_record(seniority=40, age=30))


def test_batch_size_limits(make_record):
    assert errors_of({"applications": []}) == [(("applications",), "too_short")]
    too_many = {"applications": [make_record()] * (MAX_APPLICATIONS_PER_REQUEST + 1)}
    assert errors_of(too_many) == [(("applications",), "too_long")]


def test_optional_fields_may_be_null_or_absent(make_record):
    application = Application.model_validate(
        make_record(income=None, assets=..., debt=..., home=None, marital=None, job=None)
    )
    assert application.income is None
    assert application.assets is None


def test_valid_json_round_trip(make_record):
    request = ScoreRequest.model_validate_json(
        ScoreRequest.model_validate({"applications": [make_record()]}).model_dump_json()
    )
    assert request.applications[0].age == 30


def test_contract_document_names_every_field_and_version():
    document = contract_document()
    assert document["fields"] == list(CONTRACT_FIELDS)
    assert set(CONTRACT_FIELDS) <= set(document["application_schema"]["properties"])
    assert document["version"]


def test_every_contract_field_is_either_numeric_or_categorical():
    from credit_risk.contract import CATEGORICAL_FIELDS, NUMERIC_FIELDS

    assert sorted(CONTRACT_FIELDS) == sorted(NUMERIC_FIELDS + CATEGORICAL_FIELDS)
    assert CONTRACT_FIELDS[:3] == ("seniority", "home", "time")
