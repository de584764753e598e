"""A canary beside the champion, in process: promotion through the same gates, the split of a
request's rows with each answer naming its model, the arm in the prediction log, and the
automatic rollback, by a canary that fails at runtime and by a worse but gate-passing one,
recorded in the shared split table so another worker drops it too."""

from __future__ import annotations

import asyncio
import shutil
from functools import partial

import bentoml
import pytest
from mlflow import MlflowClient
from tests_support import TINY_CONFIG

from api.canary import CanarySplit
from api.scorer import LocalScorer, RunnerBusy
from api.scoring import Arm, ScoringPipeline
from api.shadow import ShadowBatcher
from credit_risk.contract import Application
from credit_risk.reasons import ReasonCoder
from credit_risk.records import contract_records
from model_artifact.bundle import mlflow_folder, read_bundle
from model_artifact.champion import CanaryTag, read_champion, resolve_served_tags
from model_artifact.settings import DecisionSettings, ReasonSettings
from monitoring.prediction_log import read_predictions
from monitoring.recorder import ServingMonitor
from monitoring.settings import CanarySettings, MonitoringSettings
from monitoring.traffic_split import TrafficSplitStore
from serving.served_models import ServedModels
from training.data import load_credit_data, split
from training.promote import import_into_store, promote, remove_canary
from training.promote import main as promote_main
from training.registry import resolve
from training.settings import PromotionSettings, TrainingConfig
from training.train import train


@pytest.fixture(autouse=True)
def registry_aliases_restored(champion):
    """These tests promote (and complete) canaries in the session's one MLflow registry:
    afterwards every alias points where it did, so later tests meet the session's champion."""
    client = MlflowClient()
    before = {alias: alias_version(alias) for alias in ("champion", "canary", "challenger")}
    yield
    for alias, version in before.items():
        if version is not None:
            client.set_registered_model_alias("credit-risk", alias, version)
        elif alias_version(alias) is not None:
            client.delete_registered_model_alias("credit-risk", alias)


def alias_version(alias: str) -> str | None:
    """The version a registry alias points at, if any."""
    try:
        return str(MlflowClient().get_model_version_by_alias("credit-risk", alias).version)
    except Exception:
        return None


@pytest.fixture
def registry(champion, tmp_path):
    """The session's registry with a champion file of this test's own."""
    settings, _, _ = champion
    local = settings.model_copy(update={"champion_file": tmp_path / "champion.json"})
    shutil.copy2(settings.champion_file, local.champion_file)
    return local


@pytest.fixture
def second_model(champion, candidate) -> str:
    """Another trained version in the BentoML store (imported as promotion imports it, no
    alias moved): the canary of the tests that need only a second model."""
    settings, _, _ = champion
    found = resolve(MlflowClient(), settings.registered_model_name, candidate.registered_version)
    model, _ = import_into_store(found, settings)
    return str(model.tag)


@pytest.fixture(scope="module")
def weak_version(champion):
    """A worse model that still passes the gates of a looser policy: one epoch of a 2-unit
    network (its scores bunch together: lower estimated AUC, other decisions)."""
    settings, _, _ = champion
    config = TrainingConfig(**(TINY_CONFIG | {"epochs": 1, "hidden": (2,), "patience": 1}), seed=5)
    return train(config, settings)


DEVICE_ERROR = RuntimeError("CUDA error: an illegal memory access was encountered")


class Broken:
    """A model as loaded, whose every forward pass raises ``error``."""

    def __init__(self, model, error: Exception):
        self.model = model
        self.error = error

    def __getattr__(self, name):
        return getattr(self.model, name)

    def predict(self, matrix):
        raise self.error


def pipeline(
    champion_tag: str,
    canary_tag: str,
    share: float,
    log_url: str,
    challenger_tag: str | None = None,
    **bounds: float,
):
    """What service.py composes for one API worker, with a local scorer."""
    challenger = bentoml.models.get(challenger_tag) if challenger_tag else None
    models = ServedModels.load(
        bentoml.models.get(champion_tag), challenger, bentoml.models.get(canary_tag), "cpu", 1
    )

    def arm(role, tag):
        bundle = read_bundle(mlflow_folder(bentoml.models.get(tag)))
        names = bundle.feature_params.feature_names
        return Arm(role, tag, bundle.feature_params, ReasonCoder(names, ReasonSettings()))

    monitoring = MonitoringSettings(prediction_log_url=log_url)
    champion_model = bentoml.models.get(champion_tag)
    monitor = ServingMonitor(
        read_bundle(mlflow_folder(champion_model)), champion_tag, {}, monitoring
    )
    split = CanarySplit(
        CanaryTag(canary_tag, "2026-12-04T00:00:00+00:00", share),
        TrafficSplitStore(log_url),
        CanarySettings(**bounds),
    )
    split.refresh()
    scorer = LocalScorer(models, 256)
    shadow = None
    if challenger_tag is not None:
        shadow = ShadowBatcher(
            read_bundle(mlflow_folder(challenger)).feature_params,
            partial(scorer.predict, role="challenger"),
            partial(monitor.record_challenger, model_tag=challenger_tag),
        )
    scoring = ScoringPipeline(
        arm("champion", champion_tag),
        scorer,
        DecisionSettings(),
        monitor,
        shadow,
        256,
        canary=arm("canary", canary_tag),
        split=split,
    )
    return scoring, models


def applications(count: int, prefix: str) -> list[Application]:
    records = contract_records(split(load_credit_data(), seed=42).test)
    return [
        Application.model_validate(dict(records[i % len(records)], request_id=f"{prefix}-{i}"))
        for i in range(count)
    ]


def answer_all(scoring, apps, size=100):
    async def run():
        results = []
        for start in range(0, len(apps), size):
            response = await scoring.answer(apps[start : start + size], explain=False)
            results += response.results
        return results

    return asyncio.run(run())


def test_canary_promotion_gates_records_and_completes(registry, candidate):
    report = promote(registry, version=candidate.registered_version, role="canary", share=0.25)
    assert report.promoted, report.gates
    assert {gate.name for gate in report.gates} >= {"loads", "contract", "golden_set"}
    record = read_champion(registry.champion_file)
    assert record.canary.bento_model_tag == report.bento_model_tag
    assert record.canary_share == 0.25
    served = resolve_served_tags(registry)
    assert served.canary.tag == report.bento_model_tag
    assert served.canary.share == 0.25
    client = MlflowClient()
    canary_version = client.get_model_version_by_alias("credit-risk", "canary").version
    assert str(canary_version) == candidate.registered_version
    # completing it: the canary's version promoted as champion; the canary is gone
    completed = promote(registry, version=candidate.registered_version)
    assert completed.promoted
    record = read_champion(registry.champion_file)
    assert record.current.bento_model_tag == report.bento_model_tag
    assert record.canary is None
    assert resolve_served_tags(registry).canary is None
    with pytest.raises(Exception, match="canary"):
        client.get_model_version_by_alias("credit-risk", "canary")


def test_rollback_removes_the_canary_first(registry, candidate, monkeypatch, capsys):
    report = promote(registry, version=candidate.registered_version, role="canary", share=0.1)
    champion_before = read_champion(registry.champion_file).current
    monkeypatch.setenv("CREDIT_RISK_CHAMPION_FILE", str(registry.champion_file))
    assert promote_main(["rollback"]) == 0
    assert f"REMOVED canary {report.bento_model_tag}" in capsys.readouterr().out
    record = read_champion(registry.champion_file)
    assert record.canary is None
    assert record.current == champion_before  # the champion untouched
    with pytest.raises(LookupError):
        remove_canary(registry)


def test_a_canary_share_needs_a_canary(registry, candidate, monkeypatch):
    monkeypatch.setenv("CREDIT_RISK_CHAMPION_FILE", str(registry.champion_file))
    with pytest.raises(SystemExit):
        promote_main(["--version", candidate.registered_version, "--as", "canary"])
    with pytest.raises(SystemExit):
        promote_main(["--version", candidate.registered_version, "--share", "0.2"])


def test_rows_are_split_sticky_and_logged_by_arm(champion, candidate, registry, tmp_path):
    _, _, report = champion
    canary = promote(registry, version=candidate.registered_version, role="canary", share=0.25)
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    scoring, _ = pipeline(
        report.bento_model_tag, canary.bento_model_tag, 0.25, log_url, min_rows=10**6
    )
    apps = applications(2000, "sticky")
    first = answer_all(scoring, apps)
    again = answer_all(scoring, list(reversed(apps)), size=7)[::-1]
    tags = [r.model_tag for r in first]
    share = tags.count(canary.bento_model_tag) / len(tags)
    assert share == pytest.approx(0.25, abs=0.04)
    assert set(tags) == {report.bento_model_tag, canary.bento_model_tag}
    assert [r.request_id for r in first] == [a.request_id for a in apps]  # request order kept
    assert [r.model_tag for r in again] == tags  # resent: the same model for each applicant
    # the same score, up to float32 rounding of another batch composition
    assert [r.probability_default for r in again] == pytest.approx(
        [r.probability_default for r in first], abs=1e-6
    )
    scoring.monitor.close()
    logged = {row["request_id"]: row for row in read_predictions(log_url, "canary")}
    assert len(logged) == tags.count(canary.bento_model_tag)
    assert {row["model_tag"] for row in logged.values()} == {canary.bento_model_tag}
    assert len(read_predictions(log_url, "champion")) == tags.count(report.bento_model_tag)


def test_a_shadow_challenger_scores_the_rows_of_both_arms(
    champion, candidate, weak_version, registry, tmp_path
):
    _, _, report = champion
    canary = promote(registry, version=candidate.registered_version, role="canary", share=0.25)
    policy = PromotionSettings(promotion_max_auc_drop=0.2, promotion_min_test_auc=0.6)
    challenger = promote(
        registry, version=weak_version.registered_version, role="challenger", policy=policy
    )
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    scoring, _ = pipeline(
        report.bento_model_tag,
        canary.bento_model_tag,
        0.25,
        log_url,
        challenger_tag=challenger.bento_model_tag,
        min_rows=10**6,
    )
    results = answer_all(scoring, applications(400, "shadowed"))
    asyncio.run(scoring.shadow.flush())
    scoring.monitor.close()
    shadowed = {row["request_id"] for row in read_predictions(log_url, "challenger")}
    assert shadowed == {r.request_id for r in results}  # champion's and canary's rows alike
    assert {r.model_tag for r in results} == {report.bento_model_tag, canary.bento_model_tag}


def test_a_canary_that_fails_at_runtime_is_answered_by_the_champion_then_rolled_back(
    champion, second_model, tmp_path, monkeypatch
):
    _, _, report = champion
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    scoring, models = pipeline(report.bento_model_tag, second_model, 0.5, log_url)

    monkeypatch.setattr(models, "canary", Broken(models.canary, DEVICE_ERROR))
    results = answer_all(scoring, applications(400, "broken"), size=40)
    assert {r.model_tag for r in results} == {report.bento_model_tag}  # every answer given
    breaches = scoring.split.check()
    assert [b.reason for b in breaches] == ["errors"]
    scoring.split.roll_back(breaches)
    assert scoring.split.share == 0.0
    # another worker of the same deployment reads the rollback from the shared table
    store = TrafficSplitStore(log_url)
    change = store.state(second_model, "2026-12-04T00:00:00+00:00").last
    assert change.share == 0.0
    assert change.source == "rollback"
    assert "failed" in change.reason
    neighbour, _ = pipeline(report.bento_model_tag, second_model, 0.5, log_url)
    assert neighbour.split.share == 0.0
    scoring.monitor.close()
    neighbour.monitor.close()


def test_a_worse_gate_passing_canary_is_rolled_back(champion, weak_version, tmp_path):
    _, _, report = champion
    local = champion[0].model_copy(update={"champion_file": tmp_path / "c.json"})
    shutil.copy2(champion[0].champion_file, local.champion_file)
    policy = PromotionSettings(promotion_max_auc_drop=0.2, promotion_min_test_auc=0.6)
    weak = promote(
        local, version=weak_version.registered_version, role="canary", share=0.5, policy=policy
    )
    assert weak.promoted, weak.gates
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    scoring, _ = pipeline(report.bento_model_tag, weak.bento_model_tag, 0.5, log_url)
    results = answer_all(scoring, applications(1200, "weak"))
    assert {r.model_tag for r in results} == {report.bento_model_tag, weak.bento_model_tag}
    breaches = {b.reason: b.detail for b in scoring.split.check()}
    assert breaches.keys() & {"score_drift", "estimated_auc"}, breaches
    scoring.monitor.close()


def test_a_canary_shed_as_busy_is_answered_by_the_champion_and_counted(
    champion, second_model, tmp_path, monkeypatch
):
    """A canary too slow for its queue (its calls shed as busy, 503 material) costs the
    applicants nothing: the champion answers them, and the canary's window counts it."""
    _, _, report = champion
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    scoring, models = pipeline(report.bento_model_tag, second_model, 0.5, log_url)
    monkeypatch.setattr(models, "canary", Broken(models.canary, RunnerBusy("model runner busy")))
    results = answer_all(scoring, applications(200, "busy"), size=20)
    assert {r.model_tag for r in results} == {report.bento_model_tag}
    canary_window = scoring.split.windows["canary"]
    assert canary_window.failed == canary_window.requests == 10
    assert [b.reason for b in scoring.split.check()] == ["errors"]
    scoring.monitor.close()
    # the stand-in answers are the champion's, but not the champion arm's evidence
    assert scoring.split.windows["champion"].requests == 10


def test_a_request_whose_champion_part_fails_logs_nothing_of_it(
    champion, second_model, tmp_path, monkeypatch
):
    _, _, report = champion
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    scoring, models = pipeline(report.bento_model_tag, second_model, 0.5, log_url)
    monkeypatch.setattr(models, "champion", Broken(models.champion, DEVICE_ERROR))
    with pytest.raises(RuntimeError, match="CUDA"):
        answer_all(scoring, applications(40, "failed"))
    scoring.monitor.close()
    # the canary's half was computed, but a request that fails is answered nothing and logs
    # nothing: the log holds what clients were told
    assert read_predictions(log_url, "canary") == []
    assert read_predictions(log_url, "champion") == []
    assert scoring.split.windows["champion"].failed == 1


def test_the_champion_cannot_be_its_own_canary_and_nothing_moves(registry, champion):
    _, result, _ = champion
    before = registry.champion_file.read_text()
    alias_before = alias_version("canary")
    with pytest.raises(ValueError, match="is the champion"):
        promote(registry, version=result.registered_version, role="canary", share=0.2)
    assert registry.champion_file.read_text() == before
    assert alias_version("canary") == alias_before
