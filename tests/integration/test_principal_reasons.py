"""Principal reasons from the served model: faithful to its probabilities, stable under tiny
noise, pointing at the one bad trait of an otherwise typical applicant, and the same online and
in batch."""

from __future__ import annotations

import asyncio

import bentoml
import numpy as np
import pandas as pd
import pytest
import torch

from batch.score import score_frame
from credit_risk.contract import CATEGORICAL_FIELDS, NUMERIC_FIELDS, Application
from credit_risk.decision import DecisionThresholds
from credit_risk.pipeline import records_to_matrix
from credit_risk.reasons import ReasonCoder, ReasonPolicy, reason_string
from credit_risk.records import contract_records
from model_artifact.loaded_model import LoadedModel
from training.data import TARGET, load_credit_data, split

FIDELITY_TOLERANCE = 5e-3  # |sum of contributions - (p - p_baseline)|, probability units


@pytest.fixture(scope="module")
def model(champion) -> LoadedModel:
    _, _, report = champion
    stored = bentoml.models.get(report.bento_model_tag)
    return LoadedModel.from_bento_model(stored, torch.device("cpu"))


@pytest.fixture(scope="module")
def test_records() -> list[dict[str, object]]:
    return contract_records(split(load_credit_data(), seed=42).test)


@pytest.fixture(scope="module")
def coder(model) -> ReasonCoder:
    return ReasonCoder(model.bundle.feature_params.feature_names, ReasonPolicy())


def test_contributions_add_up_to_the_probability_gap(model, test_records):
    matrix = records_to_matrix(test_records, model.bundle.feature_params)
    contributions = model.attribute(matrix)
    baseline = model.bundle.baseline_row()
    gap = model.scorer.predict(matrix) - model.scorer.predict(baseline[None])
    error = np.abs(contributions.sum(axis=1) - gap)
    assert error.max() < FIDELITY_TOLERANCE, (error.max(), np.median(error))


def test_top_reasons_are_stable_under_tiny_input_noise(model, coder, test_records):
    params = model.bundle.feature_params
    matrix = records_to_matrix(test_records, params)
    rng = np.random.default_rng(0)
    noisy = [
        {
            k: v * (1 + 1e-6 * rng.standard_normal()) if isinstance(v, float) else v
            for k, v in record.items()
        }
        for record in test_records
    ]
    before = coder.principal(model.attribute(matrix))
    after = coder.principal(model.attribute(records_to_matrix(noisy, params)))
    first = np.mean([b[:1] == a[:1] or not b for b, a in zip(before, after, strict=True)])
    codes = np.mean(
        [[r.code for r in b] == [r.code for r in a] for b, a in zip(before, after, strict=True)]
    )
    assert first == 1.0
    assert codes >= 0.99


def test_an_applicant_whose_only_bad_trait_is_prior_records_hears_records_first(model, coder):
    repaid = load_credit_data().query(f"{TARGET} == 0 and records == 'no'")
    typical = {f: int(repaid[f].median()) for f in ("seniority", "time", "age")}
    typical |= {f: float(repaid[f].median()) for f in NUMERIC_FIELDS if f not in typical}
    typical |= {f: str(repaid[f].mode()[0]) for f in CATEGORICAL_FIELDS}
    clean = Application.model_validate(typical | {"records": "no"}).model_dump()
    flagged = Application.model_validate(typical | {"records": "yes"}).model_dump()
    params = model.bundle.feature_params
    matrix = records_to_matrix([clean, flagged], params)
    (_, reasons) = coder.principal(model.attribute(matrix))
    assert reasons[0].code == "records", reasons


def test_the_same_rows_get_the_same_reasons_online_and_in_batch(champion, model, test_records):
    from service import CreditRiskAPI

    api = CreditRiskAPI()
    rows = test_records[:200]
    applications = [Application.model_validate(r) for r in rows]
    online = asyncio.run(api.score(applications, explain=True)).results
    batch, _ = score_frame(pd.DataFrame(rows), model, DecisionThresholds(), explain_all=True)
    assert [r.decision for r in online] == batch["decision"].tolist()
    assert [reason_string(r.principal_reasons) for r in online] == batch[
        "principal_reasons"
    ].tolist()
    assert all(len(r.principal_reasons) <= 4 for r in online)
    assert sum(bool(r.principal_reasons) for r in online) > 150  # nearly every row has one

    # without the flag, by default: declines only, online and in files alike
    default = asyncio.run(api.score(applications)).results
    assert all(bool(r.principal_reasons) == (r.decision == "decline") for r in default)
    files, _ = score_frame(pd.DataFrame(rows), model, DecisionThresholds())
    assert [reason_string(r.principal_reasons) for r in default] == files[
        "principal_reasons"
    ].tolist()
