"""Promotion gates: each answers pass/fail with the numbers behind it; any failure refuses
the promotion. They run against the model as imported into the BentoML store, so a pass
proves the artifact that will be served loads and predicts as it did in training."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from credit_risk.contract import (
    CONTRACT_FIELDS,
    CONTRACT_VERSION,
    Application,
    contract_document,
)
from credit_risk.decision import DecisionThresholds, decide
from credit_risk.features import raw_columns_from_records
from model_artifact.bundle import ModelBundle, StoredModel
from model_artifact.loaded_model import LoadedModel
from training.registry import Candidate
from training.settings import PromotionSettings

TEST_AUC = "test_roc_auc"


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    detail: str


def load_gate(imported: StoredModel) -> tuple[GateResult, LoadedModel | None]:
    """The imported copy must load the way the runner loads it: bundle files, then the exported
    network. What a broken artifact raises belongs to the loader (zipfile, torch.export, json,
    pydantic), so any failure becomes this gate's refusal in the loader's own words, not a
    traceback; the gates that need the loaded model then cannot run."""
    try:
        loaded = LoadedModel.from_bento_model(imported, torch.device("cpu"))
    except Exception as error:  # every loader failure is a refusal, whatever its type
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        return GateResult("loads", False, f"{imported.tag} does not load: {reason}"), None
    width = len(loaded.bundle.feature_params.feature_names)
    return GateResult("loads", True, f"bundle and network ({width} inputs) load on cpu"), loaded


def field_definitions(contract: dict[str, Any]) -> dict[str, Any]:
    """Each field's JSON schema without its prose (title, description): what a value may be."""
    properties = contract.get("application_schema", {}).get("properties", {})
    return {
        name: {k: v for k, v in schema.items() if k not in ("title", "description")}
        for name, schema in properties.items()
    }


def contract_gate(bundle: ModelBundle) -> GateResult:
    """The model must have been trained for the contract this code serves: same version, same
    fields in the same order, each accepting the same values (a level or bound changed without
    a version bump is caught here, not by the model's silent misreading)."""
    model_version = bundle.contract.get("version")
    model_fields = list(bundle.contract.get("fields", []))
    served_fields = list(CONTRACT_FIELDS)
    theirs = field_definitions(bundle.contract)
    ours = field_definitions(contract_document())
    only_served = [f for f in served_fields if f not in model_fields]
    only_model = [f for f in model_fields if f not in served_fields]
    changed = [f for f in served_fields if f in model_fields and theirs.get(f) != ours.get(f)]
    differences = [
        f"{label} {fields}"
        for label, fields in (
            ("served only", only_served),
            ("model only", only_model),
            ("definition changed", changed),
        )
        if fields
    ]
    detail = f"model contract {model_version} vs served {CONTRACT_VERSION}; "
    if differences:
        detail += "fields differ: " + ", ".join(differences)
    elif model_fields != served_fields:
        detail += "same fields in another order"
    else:
        detail += "fields match"
    passed = model_version == CONTRACT_VERSION and model_fields == served_fields and not changed
    return GateResult("contract", passed, detail)


def decisions(
    probabilities: np.ndarray, records: list[dict[str, object]], thresholds: DecisionThresholds
) -> list[str]:
    raw = raw_columns_from_records([Application.model_validate(r).model_dump() for r in records])
    return [verdict.decision for verdict in decide(probabilities, raw, thresholds)]


def golden_gate(
    candidate: LoadedModel,
    champion: LoadedModel | None,
    policy: PromotionSettings,
    thresholds: DecisionThresholds,
) -> GateResult:
    """The imported candidate must reproduce its logged golden outputs; flips vs the champion
    are reported (they are policy-relevant, not a failure by themselves)."""
    records = candidate.bundle.golden["records"]
    expected = np.asarray(candidate.bundle.golden["probabilities"], dtype=np.float64)
    got = candidate.score_records(records).astype(np.float64)
    max_error = float(np.max(np.abs(got - expected))) if len(expected) else 0.0
    detail = (
        f"{len(records)} rows, max |error| {max_error:.2e} "
        f"(tolerance {policy.golden_tolerance:.0e})"
    )
    if champion is not None:
        theirs = decisions(champion.score_records(records), records, thresholds)
        ours = decisions(got, records, thresholds)
        flips = sum(a != b for a, b in zip(ours, theirs, strict=True))
        detail += f"; {flips} decision flips vs champion"
    return GateResult("golden_set", max_error <= policy.golden_tolerance, detail)


def metric_gate(
    candidate: Candidate, champion: Candidate | None, policy: PromotionSettings
) -> GateResult:
    auc = candidate.metrics.get(TEST_AUC)
    if auc is None:
        return GateResult("metric_floor", False, f"run logged no {TEST_AUC}")
    floor = policy.promotion_min_test_auc
    detail = f"{TEST_AUC} {auc:.4f} (floor {floor:.4f})"
    passed = auc >= floor
    if champion is not None and TEST_AUC in champion.metrics:
        theirs = champion.metrics[TEST_AUC]
        passed = passed and auc >= theirs - policy.promotion_max_auc_drop
        detail += (
            f"; champion v{champion.version} {theirs:.4f}, max drop {policy.promotion_max_auc_drop}"
        )
    return GateResult("metric_floor", passed, detail)


def installed_version(name: str) -> str:
    try:
        return version(name).split("+")[0]
    except PackageNotFoundError:
        return "missing"


def dependency_gate(requirements_file: Path) -> GateResult:
    """Every ``name==version`` the model was logged with must be what this environment has."""
    pins = [
        line.strip().split("==")
        for line in requirements_file.read_text().splitlines()
        if "==" in line and not line.startswith("#")
    ]
    mismatches = [
        f"{name} trained {wanted} / serving {installed_version(name)}"
        for name, wanted in pins
        if installed_version(name) != wanted
    ]
    detail = "; ".join(mismatches) if mismatches else f"{len(pins)} pinned packages match"
    return GateResult("dependency_parity", not mismatches, detail)
