"""Table validation for batch files: exactly the rows the contract accepts, with the contract's
own reasons for the others, whatever the column types pandas inferred."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from strategies import PROPERTIES, REQUIRED, field_strategy

from credit_risk.contract import CATEGORICAL_FIELDS, CONTRACT_FIELDS, Application
from credit_risk.features import raw_columns_from_records
from credit_risk.records import records_from_frame
from credit_risk.table_contract import validate_table


def reference(frame: pd.DataFrame):
    """The contract row by row: what the table validation must reproduce."""
    accepted, applications, rejected = [], [], set()
    for row, record in enumerate(records_from_frame(frame)):
        try:
            applications.append(Application.model_validate(record))
            accepted.append(row)
        except ValidationError:
            rejected.add(row)
    return accepted, applications, rejected


def assert_same_as_row_by_row(frame: pd.DataFrame) -> None:
    table = validate_table(frame)
    accepted, applications, rejected = reference(frame)
    assert table.rows.tolist() == accepted
    assert {reject["row"] for reject in table.rejects} == rejected
    expected = raw_columns_from_records([a.model_dump() for a in applications])
    for field, values in expected.items():
        if field in CATEGORICAL_FIELDS:
            assert table.raw[field].tolist() == values.tolist(), field
        else:
            np.testing.assert_array_equal(table.raw[field], values, err_msg=field)
    assert table.request_ids.tolist() == [a.request_id for a in applications]


def _bad_numbers(field: str) -> list[float]:
    spec = next(v for v in PROPERTIES[field].get("anyOf", [PROPERTIES[field]]) if "type" in v)
    spec = spec if spec["type"] != "null" else PROPERTIES[field]["anyOf"][0]
    low = spec.get("minimum", spec.get("exclusiveMinimum"))
    bad = [low - 1, spec["maximum"] + 1, math.inf, -math.inf, math.nan, low]
    return bad + ([low + 0.5] if spec["type"] == "integer" else [])


def cell(field: str, broken: bool, mixed: bool) -> st.SearchStrategy[object]:
    """Valid values; in a ``broken`` column also values the column checks must catch, and in a
    ``mixed`` one values that make pandas fall back to an object column."""
    if field == "request_id":
        good = st.one_of(st.text("ab1-", min_size=1, max_size=5), st.none(), st.integers(0, 99))
        bad = st.sampled_from(["", "has space", "x" * 65, "ok\n"])
    elif field in CATEGORICAL_FIELDS:
        good = field_strategy(field)
        bad = st.sampled_from(["__not_a_level__", None, " rent"] + ([1, True] if mixed else []))
    else:
        good = field_strategy(field)
        bad = st.sampled_from(_bad_numbers(field) + (["12", True] if mixed else []))
    return st.one_of(good, good, bad) if broken else good


@st.composite
def tables(draw: st.DrawFn) -> pd.DataFrame:
    rows = draw(st.integers(1, 12))
    fields = ["request_id", *CONTRACT_FIELDS]
    data = {}
    for field in fields:
        broken, mixed = draw(st.integers(0, 3)) == 0, draw(st.integers(0, 7)) == 0
        values = draw(st.lists(cell(field, broken, mixed), min_size=rows, max_size=rows))
        if field in {"seniority", "age"} and not mixed:  # mostly respect seniority <= age
            values = [v if not isinstance(v, int) else min(v, 18) for v in values]
        data[field] = values
    frame = pd.DataFrame(data)
    dropped = draw(st.sampled_from([None, None, None, "income", "home", "request_id", "age"]))
    if dropped:
        frame = frame.drop(columns=[dropped])
    if draw(st.integers(0, 9)) == 0:
        frame["unexpected"] = 1
    return frame


@settings(max_examples=400, deadline=None)
@given(frame=tables())
def test_accepts_exactly_the_rows_the_contract_accepts(frame):
    assert_same_as_row_by_row(frame)


def test_clean_numeric_file_is_accepted_without_the_row_path(make_record, monkeypatch):
    import credit_risk.table_contract as module

    frame = pd.DataFrame([make_record(), make_record(income=None, home=None)] * 50)
    monkeypatch.setattr(module.Application, "model_validate", None)  # would fail if called
    table = validate_table(frame)
    assert len(table.rows) == 100
    assert table.rejects == []


def test_numbers_written_as_text_are_numbers_as_before(make_record):
    frame = pd.DataFrame([make_record(age=40), make_record(age=41)]).astype(object)
    frame.loc[0, "age"] = "40"
    assert_same_as_row_by_row(frame)
    assert validate_table(frame).rows.tolist() == [0, 1]


def test_each_bad_row_is_rejected_with_field_and_reason(make_record):
    frame = pd.DataFrame(
        [make_record(), make_record(age=7), make_record(home="castle"), make_record(time=2.5)]
    )
    table = validate_table(frame)
    assert table.rows.tolist() == [0]
    assert [(r["row"], r["field"]) for r in table.rejects] == [(1, "age"), (2, "home"), (3, "time")]
    assert all(r["reason"] for r in table.rejects)


def test_unknown_or_missing_required_column_rejects_every_row(make_record):
    extra = pd.DataFrame([make_record()] * 3).assign(colour="blue")
    assert {r["field"] for r in validate_table(extra).rejects} == {"colour"}
    missing = pd.DataFrame([make_record()] * 3).drop(columns=["amount"])
    assert {r["field"] for r in validate_table(missing).rejects} == {"amount"}
    assert validate_table(missing).rows.size == 0


def test_optional_columns_may_be_absent(make_record):
    optional = sorted(set(CONTRACT_FIELDS) - REQUIRED)
    frame = pd.DataFrame([make_record()] * 4).drop(columns=optional)
    table = validate_table(frame)
    assert table.rows.tolist() == [0, 1, 2, 3]
    assert np.isnan(table.raw["income"]).all()
    assert table.raw["home"].tolist() == [None] * 4


def test_numeric_request_ids_are_ids(make_record):
    frame = pd.DataFrame([make_record(request_id=None)] * 2).assign(request_id=[17, 18])
    assert validate_table(frame).request_ids.tolist() == ["17", "18"]
