"""Property-based: every contract-valid application becomes a finite float32 row of the trained
width; every invalid one is refused naming the broken field."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from strategies import invalid_records, valid_records

from credit_risk.contract import Application, ScoreRequest
from credit_risk.decision import DecisionThresholds, decide
from credit_risk.features import raw_columns_from_records
from credit_risk.pipeline import records_to_matrix

FIXTURES_OK = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FIXTURES_OK
@given(records=st.lists(valid_records(), min_size=1, max_size=8))
def test_valid_applications_give_finite_float32_rows_of_trained_width(fitted_params, records):
    applications = [Application.model_validate(r) for r in records]
    matrix = records_to_matrix([a.model_dump() for a in applications], fitted_params)
    assert matrix.dtype == np.float32
    assert matrix.shape == (len(records), len(fitted_params.feature_names))
    assert np.isfinite(matrix).all()


@FIXTURES_OK
@given(record=valid_records())
def test_rows_do_not_depend_on_their_batch_neighbours(fitted_params, make_record, record):
    alone = records_to_matrix([Application.model_validate(record).model_dump()], fitted_params)
    batch = records_to_matrix(
        [make_record(), Application.model_validate(record).model_dump()], fitted_params
    )
    np.testing.assert_array_equal(alone[0], batch[1])


@FIXTURES_OK
@given(case=invalid_records())
def test_invalid_applications_are_refused_naming_the_field(make_record, case):
    record, field = case
    with pytest.raises(ValidationError) as caught:
        ScoreRequest.model_validate({"applications": [make_record(), record]})
    locations = [error["loc"] for error in caught.value.errors()]
    assert any(loc[:2] == ("applications", 1) for loc in locations)
    assert any(field in loc or len(loc) == 2 for loc in locations), locations


@given(probability=st.floats(0, 1), record=valid_records())
def test_every_probability_maps_to_exactly_one_decision(probability, record):
    raw = raw_columns_from_records([Application.model_validate(record).model_dump()])
    (verdict,) = decide(np.array([probability]), raw, DecisionThresholds())
    assert verdict.decision in {"approve", "review", "decline"}
    assert verdict.reasons
