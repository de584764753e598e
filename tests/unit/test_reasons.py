"""Reason codes: engineered columns map back to contract fields, the principal reasons are the
largest positive contributions, and policy's texts must cover every field."""

from __future__ import annotations

import numpy as np
import pytest

from credit_risk.contract import CONTRACT_FIELDS
from credit_risk.reasons import (
    DEFAULT_TEXTS_FILE,
    ReasonCoder,
    ReasonPolicy,
    column_weights,
    load_texts,
    reason_string,
)
from model_artifact.settings import ReasonSettings

FIELD = {name: index for index, name in enumerate(CONTRACT_FIELDS)}


def test_every_column_of_a_field_maps_to_it_and_a_ratio_is_split(fitted_params):
    names = fitted_params.feature_names
    weights = column_weights(names)
    assert weights.shape == (len(names), len(CONTRACT_FIELDS))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)  # nothing lost, nothing doubled
    row = names.index("ratio__amount_to_income")
    assert weights[row, FIELD["amount"]] == weights[row, FIELD["income"]] == 0.5
    for name in ("num__income", "missing__income"):
        assert weights[names.index(name), FIELD["income"]] == 1.0
    hot = [n for n in names if n.startswith("cat__home=")]
    assert all(weights[names.index(n), FIELD["home"]] == 1.0 for n in hot)


def test_principal_reasons_are_the_largest_positive_fields_first(fitted_params):
    names = fitted_params.feature_names
    coder = ReasonCoder(names, ReasonPolicy())
    attributions = np.zeros((1, len(names)))
    attributions[0, names.index("num__debt")] = 0.02
    attributions[0, names.index("cat__records=yes")] = 0.15
    attributions[0, names.index("num__income")] = -0.30  # lowered the risk: never a reason
    attributions[0, names.index("ratio__amount_to_income")] = 0.10  # 0.05 each
    (reasons,) = coder.principal(attributions)
    assert [(r.code, r.contribution) for r in reasons] == [
        ("records", 0.15),
        ("amount", 0.05),
        ("debt", 0.02),
    ]
    assert reasons[0].text == load_texts(DEFAULT_TEXTS_FILE)["records"]
    assert reason_string(reasons) == "records:+0.1500|amount:+0.0500|debt:+0.0200"


def test_at_most_max_reasons(fitted_params):
    names = fitted_params.feature_names
    coder = ReasonCoder(names, ReasonPolicy(max_reasons=2))
    (reasons,) = coder.principal(np.ones((1, len(names))))
    assert len(reasons) == 2


@pytest.mark.parametrize(
    ("policy", "requested", "expected"),
    [
        ("adverse", False, [1, 2]),
        ("decline", False, [2]),
        ("requested", False, []),
        ("decline", True, [0, 1, 2]),
    ],
)
def test_which_rows_get_reasons(fitted_params, policy, requested, expected):
    coder = ReasonCoder(fitted_params.feature_names, ReasonPolicy(for_decisions=policy))
    rows = coder.rows_to_explain(["approve", "review", "decline"], requested)
    assert rows.tolist() == expected


def test_reasons_land_on_their_rows(fitted_params):
    names = fitted_params.feature_names
    coder = ReasonCoder(names, ReasonPolicy())
    attributions = np.zeros((1, len(names)))
    attributions[0, names.index("num__age")] = 0.1
    reasons = coder.for_rows(3, np.array([2]), attributions)
    assert [[r.code for r in row] for row in reasons] == [[], [], ["age"]]


def test_texts_must_cover_every_field(tmp_path):
    partial = tmp_path / "texts.yaml"
    partial.write_text("income: Income too low\n")
    with pytest.raises(ValueError, match="no text for reason codes"):
        load_texts(partial)


def test_policy_texts_can_be_replaced_from_the_environment(monkeypatch, tmp_path, fitted_params):
    texts = tmp_path / "texts.yaml"
    texts.write_text("".join(f"{field}: Policy says {field}\n" for field in CONTRACT_FIELDS))
    monkeypatch.setenv("CREDIT_RISK_REASONS_TEXTS_FILE", str(texts))
    coder = ReasonCoder(fitted_params.feature_names, ReasonSettings())  # the entry points'
    assert coder.texts["debt"] == "Policy says debt"
    assert ReasonPolicy().texts_file != texts  # the domain itself reads no environment
