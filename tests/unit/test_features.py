"""Feature edge cases: each way real inputs break a naive implementation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from credit_risk.features import (
    RATIOS,
    UNKNOWN_LEVEL,
    FeatureParams,
    category_codes,
    fit_vocabulary,
    raw_columns_from_records,
    safe_ratio,
)
from credit_risk.pipeline import records_to_matrix


def features_of(records, params):
    """The feature block by column name, so each edge case can name the feature it checks."""
    block = params.plan.block(raw_columns_from_records(records))
    return {name: block[:, index] for index, name in enumerate(params.feature_names)}


def test_safe_ratio_zero_negative_missing_denominators_give_nan():
    numerator = np.array([1.0, 1.0, 1.0, 1.0, np.nan])
    denominator = np.array([2.0, 0.0, -5.0, np.nan, 4.0])
    out = safe_ratio(numerator, denominator)
    assert out[0] == 0.5
    assert np.isnan(out[1:]).all()


def test_ratio_with_zero_denominator_is_imputed_not_inf(make_record, fitted_params):
    features = features_of([make_record(assets=0.0, debt=500.0, income=0.0)], fitted_params)
    for name in ("ratio__debt_to_assets", "ratio__amount_to_income", "ratio__expenses_to_income"):
        assert np.isfinite(features[name]).all(), name
    imputed = (
        fitted_params.ratios["debt_to_assets"].fill - fitted_params.ratios["debt_to_assets"].mean
    )
    imputed /= fitted_params.ratios["debt_to_assets"].std
    assert features["ratio__debt_to_assets"][0] == pytest.approx(imputed)


def test_missing_optional_values_are_imputed_and_flagged(make_record, fitted_params):
    features = features_of([make_record(income=None, assets=..., debt=None)], fitted_params)
    for field in ("income", "assets", "debt"):
        assert features[f"missing__{field}"][0] == 1.0
        params = fitted_params.numeric[field]
        expected = (
            np.log1p(np.clip(params.fill, params.low, params.high)) - params.mean
        ) / params.std
        assert features[f"num__{field}"][0] == pytest.approx(expected)


def test_present_values_are_not_flagged_missing(make_record, fitted_params):
    features = features_of([make_record()], fitted_params)
    assert all(features[f"missing__{f}"][0] == 0.0 for f in ("income", "assets", "debt"))


@pytest.mark.parametrize("value", [None, "castle", "ignore-me", ""])
def test_unknown_or_null_category_goes_to_unknown_bucket(make_record, fitted_params, value):
    features = features_of([make_record(home=value)], fitted_params)
    home = {k: v[0] for k, v in features.items() if k.startswith("cat__home=")}
    assert home[f"cat__home={UNKNOWN_LEVEL}"] == 1.0
    assert sum(home.values()) == 1.0


def test_known_category_sets_exactly_its_column(make_record, fitted_params):
    features = features_of([make_record(job="partime")], fitted_params)
    job = {k: v[0] for k, v in features.items() if k.startswith("cat__job=")}
    assert job == {k: float(k == "cat__job=partime") for k in job}


def test_rare_levels_fall_into_unknown_bucket():
    values = np.array(["a"] * 12 + ["b"] * 3 + [None], dtype=object)
    assert fit_vocabulary(values, min_count=10) == ["a"]
    codes = category_codes(values, ["a"])
    assert codes.tolist() == [0] * 12 + [1] * 4


def test_extreme_values_are_clipped_to_training_range(make_record, fitted_params):
    low = features_of([make_record(income=0.0, amount=1.0)], fitted_params)
    high = features_of([make_record(income=100_000.0, amount=10_000_000.0)], fitted_params)
    for field in ("income", "amount"):
        params = fitted_params.numeric[field]
        assert high[f"num__{field}"][0] == pytest.approx(
            (np.log1p(params.high) - params.mean) / params.std
        )
        assert low[f"num__{field}"][0] == pytest.approx(
            (np.log1p(params.low) - params.mean) / params.std
        )
    assert all(np.isfinite(v).all() for v in high.values())


def test_return_types_shapes_and_column_order(make_record, fitted_params):
    records = [make_record(), make_record(age=60, income=None)]
    features = features_of(records, fitted_params)
    assert list(features) == fitted_params.feature_names
    assert all(v.dtype == np.float64 and v.shape == (2,) for v in features.values())
    matrix = records_to_matrix(records, fitted_params)
    assert matrix.dtype == np.float32
    assert matrix.shape == (2, len(fitted_params.feature_names))
    assert matrix.flags.c_contiguous


def test_feature_names_are_fixed_by_code_not_by_json_key_order(make_record, fitted_params):
    shuffled = json.loads(json.dumps(fitted_params.model_dump(mode="json"), sort_keys=True))
    reloaded = FeatureParams.model_validate(shuffled)
    assert reloaded.feature_names == fitted_params.feature_names
    records = [make_record(), make_record(home=None, income=None)]
    np.testing.assert_array_equal(
        records_to_matrix(records, reloaded), records_to_matrix(records, fitted_params)
    )


def test_every_ratio_is_a_feature(fitted_params):
    assert [n for n in fitted_params.feature_names if n.startswith("ratio__")] == [
        f"ratio__{name}" for name in RATIOS
    ]


def test_empty_batch_gives_empty_matrix_of_right_width(fitted_params):
    matrix = records_to_matrix([], fitted_params)
    assert matrix.shape == (0, len(fitted_params.feature_names))


def test_fit_refuses_a_column_with_no_observed_values(make_record):
    from credit_risk.features import fit_feature_params

    raw = raw_columns_from_records([make_record(income=None)] * 20)
    with pytest.raises(ValueError, match="no observed values"):
        fit_feature_params(raw)


def test_fitted_params_come_from_training_rows_only(credit_splits, fitted_params):
    train_income = credit_splits.train["income"].dropna()
    assert fitted_params.numeric["income"].fill == float(np.median(train_income))


def test_overflowing_ratio_is_an_extreme_not_a_missing_value(make_record, fitted_params):
    features = features_of([make_record(amount=10_000_000.0, income=1e-300)], fitted_params)
    params = fitted_params.ratios["amount_to_income"]
    assert features["ratio__amount_to_income"][0] == pytest.approx(
        (params.high - params.mean) / params.std
    )
    assert features["missing__income"][0] == 0.0
