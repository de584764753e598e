"""Hypothesis strategies derived from the contract's JSON schema, so they follow the contract."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from credit_risk.contract import CONTRACT_FIELDS, Application

SCHEMA = Application.model_json_schema()
PROPERTIES: dict[str, dict[str, Any]] = SCHEMA["properties"]
REQUIRED = set(SCHEMA["required"])


def _variants(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("anyOf", [spec])


def _value_strategy(spec: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "enum" in spec or "const" in spec:
        return st.sampled_from(spec.get("enum", [spec.get("const")]))
    if spec.get("type") == "null":
        return st.none()
    low = spec.get("minimum", spec.get("exclusiveMinimum"))
    high = spec.get("maximum")
    if spec["type"] == "integer":
        return st.integers(min_value=low, max_value=high)
    return st.floats(
        min_value=low,
        max_value=high,
        exclude_min="exclusiveMinimum" in spec,
        allow_nan=False,
        allow_infinity=False,
    )


def field_strategy(field: str) -> st.SearchStrategy[Any]:
    return st.one_of(*[_value_strategy(v) for v in _variants(PROPERTIES[field])])


@st.composite
def valid_records(draw: st.DrawFn) -> dict[str, Any]:
    record = {field: draw(field_strategy(field)) for field in CONTRACT_FIELDS}
    record["seniority"] = min(record["seniority"], record["age"])  # cross-field rule
    for field in set(CONTRACT_FIELDS) - REQUIRED:
        if draw(st.booleans()) and record[field] is None:
            del record[field]  # absent and null are both allowed for optional fields
    return record


def _invalid_values(spec: dict[str, Any]) -> list[Any]:
    variants = _variants(spec)
    nullable = any(v.get("type") == "null" for v in variants)
    out: list[Any] = [] if nullable else [None]
    for variant in variants:
        if "enum" in variant:
            out += ["__not_a_level__", 1, True]
        elif variant.get("type") in {"integer", "number"}:
            out += ["12", [1], {"v": 1}, True, math.nan, math.inf]
            if "minimum" in variant or "exclusiveMinimum" in variant:
                out.append(variant.get("minimum", variant.get("exclusiveMinimum")) - 1)
            if "maximum" in variant:
                out.append(variant["maximum"] * 10 + 1)
            if variant["type"] == "integer":
                out.append(1.5)
    return out


@st.composite
def invalid_records(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid record with one field broken (wrong type, out of range, missing, NaN/inf,
    unknown level) or one unknown field added; returns it with the field that is wrong."""
    record = draw(valid_records())
    field = draw(st.sampled_from([*CONTRACT_FIELDS, "__extra__"]))
    if field == "__extra__":
        record["unexpected_field"] = draw(st.integers())
        return record, "unexpected_field"
    choices: list[Any] = _invalid_values(PROPERTIES[field])
    if field in REQUIRED:
        choices.append(...)
    value = draw(st.sampled_from(choices))
    if value is ...:
        del record[field]
    else:
        record[field] = value
    return record, field
