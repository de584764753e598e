"""Promote a registered MLflow version into the BentoML store, only if every gate passes.

    python -m training.promote [--version N | --alias A] [--force --reason "..."]
    python -m training.promote --version N --as challenger   # shadow-score it beside the champion
    python -m training.promote --version N --as canary --share 0.25  # it decides 25% of applicants
    python -m training.promote --version N                   # (the canary's) completes it
    python -m training.promote rollback      # remove the canary, else serve the previous champion
    python -m training.promote history       # what was served, newest first

A promotion imports the version (``bentoml.mlflow.import_model``, lineage as labels and
metadata), runs the gates against the imported copy, and only then moves the MLflow
alias (``champion``, ``challenger`` or ``canary``) and the served tags (``champion.json``)
together. A refused promotion leaves both stores as they were. ``make bento`` then builds the
Bento around those tags.

A canary passes the very gates a champion does (it makes credit decisions): it is gated against
the champion, and its share of applicants is chosen per applicant (``credit_risk.traffic``).
Promoting the canary's version as champion completes it; ``rollback`` removes a canary before
it touches the champion.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import bentoml
import mlflow
import torch
from bentoml.exceptions import NotFound
from mlflow import MlflowClient

from credit_risk.decision import DecisionThresholds
from model_artifact.bundle import mlflow_folder
from model_artifact.champion import ChampionRecord, Promotion, read_champion, write_champion
from model_artifact.loaded_model import LoadedModel
from model_artifact.settings import DecisionSettings, RegistrySettings
from training.gates import (
    GateResult,
    contract_gate,
    dependency_gate,
    golden_gate,
    load_gate,
    metric_gate,
)
from training.registry import Candidate, current_alias, resolve
from training.settings import PromotionSettings

log = logging.getLogger(__name__)
CPU = torch.device("cpu")
Role = Literal["champion", "challenger", "canary"]


@dataclass(frozen=True)
class PromotionReport:
    candidate: Candidate
    bento_model_tag: str
    gates: list[GateResult]
    promoted: bool


def bento_tag(candidate: Candidate, registry: RegistrySettings) -> str:
    """One BentoML tag per MLflow version, so re-promoting (or rolling back) reuses it."""
    return f"{registry.bento_model_name}:mlflow-v{candidate.version}"


def lineage(candidate: Candidate) -> tuple[dict[str, str], dict[str, object]]:
    """Labels (short strings, searchable) and metadata (the full record) for the import."""
    labels = {
        "registered_model": candidate.name,
        "mlflow_version": candidate.version,
        "mlflow_run_id": candidate.run_id,
        "contract_version": candidate.tags.get("contract_version", "unknown"),
    }
    metadata: dict[str, object] = {
        "mlflow_run_id": candidate.run_id,
        "mlflow_model_uri": candidate.model_uri,
        "data_fingerprint": candidate.tags.get("data_fingerprint", "unknown"),
        "git_commit": candidate.tags.get("git_commit", "unknown"),
        "metrics": {k: round(v, 6) for k, v in sorted(candidate.metrics.items())},
    }
    return labels, metadata


def import_into_store(
    candidate: Candidate, registry: RegistrySettings
) -> tuple[bentoml.Model, bool]:
    """The BentoML model for the candidate, imported now unless the store has it already."""
    tag = bento_tag(candidate, registry)
    try:
        return bentoml.models.get(tag), False
    except NotFound:
        labels, metadata = lineage(candidate)
        model = bentoml.mlflow.import_model(
            tag, candidate.model_uri, labels=labels, metadata=metadata
        )
        return model, True


def load_champion(champion: Candidate, registry: RegistrySettings) -> LoadedModel:
    """The champion to count decision flips against: from this BentoML store when it holds it,
    else straight from the registry, so a machine with a fresh store can promote against a
    shared tracking server (the download is not imported: a refusal leaves the store alone)."""
    try:
        return LoadedModel.from_bento_model(bentoml.models.get(bento_tag(champion, registry)), CPU)
    except NotFound:
        with tempfile.TemporaryDirectory() as folder:
            path = mlflow.artifacts.download_artifacts(champion.model_uri, dst_path=folder)
            return LoadedModel.from_mlflow_dir(champion.model_uri, Path(path), CPU)


def run_gates(
    candidate: Candidate,
    imported: bentoml.Model,
    champion: Candidate | None,
    registry: RegistrySettings,
    policy: PromotionSettings,
    thresholds: DecisionThresholds,
) -> list[GateResult]:
    """Every gate that can run: an artifact that does not load is refused by ``loads`` and
    cannot be checked against its contract or golden set."""
    against = champion if champion is not None and champion.version != candidate.version else None
    loads, loaded = load_gate(imported)
    gates = [loads]
    if loaded is not None:
        champion_model = None if against is None else load_champion(against, registry)
        gates += [
            contract_gate(loaded.bundle),
            golden_gate(loaded, champion_model, policy, thresholds),
        ]
    return [
        *gates,
        metric_gate(candidate, against, policy),
        dependency_gate(mlflow_folder(imported) / "requirements.txt"),
    ]


def record_promotion(
    candidate: Candidate,
    tag: str,
    registry: RegistrySettings,
    forced_reason: str | None,
    role: Role,
    share: float = 0.0,
) -> None:
    """A champion replaces the current one (which joins the history) and ends any challenger
    or canary: completes the canary when it is that version, and otherwise drops them, since
    they were gated against the champion it replaces. A challenger is set beside the champion,
    to be shadow-scored; a canary beside it, to decide ``share`` of applications."""
    previous = read_champion(registry.champion_file)
    promotion = Promotion(
        bento_model_tag=tag,
        registered_model=candidate.name,
        mlflow_version=candidate.version,
        mlflow_run_id=candidate.run_id,
        promoted_at=datetime.now(UTC).isoformat(timespec="seconds"),
        forced_reason=forced_reason,
    )
    if role != "champion":
        if previous is None:
            raise LookupError(f"promote a champion before a {role}")
        update: dict[str, object] = {role: promotion}
        if role == "canary":
            update["canary_share"] = share
        record = previous.model_copy(update=update)
    else:
        history = [previous.current, *previous.history] if previous else []
        record = ChampionRecord(current=promotion, history=history)
    write_champion(registry.champion_file, record)


def promote(
    registry: RegistrySettings,
    version: str | None = None,
    alias: str | None = None,
    force_reason: str | None = None,
    role: Role = "champion",
    policy: PromotionSettings | None = None,
    thresholds: DecisionThresholds | None = None,
    share: float = 0.0,
) -> PromotionReport:
    """Gate policy and decision thresholds come from the environment unless given; ``share``:
    a canary's share of applications."""
    if role == "canary" and not 0.0 < share <= 1.0:
        raise ValueError(f"a canary's share is in (0, 1], not {share}")
    mlflow.set_tracking_uri(registry.mlflow_tracking_uri)
    client = MlflowClient()
    candidate = resolve(client, registry.registered_model_name, version, alias)
    champion = current_alias(client, registry.registered_model_name, registry.champion_alias)
    if role != "champion":  # refused before either store changes
        recorded = read_champion(registry.champion_file)
        if recorded is None:
            raise LookupError(f"promote a champion before a {role}")
        if recorded.current.mlflow_version == candidate.version:
            raise ValueError(f"v{candidate.version} is the champion: it cannot also be its {role}")
    imported, created = import_into_store(candidate, registry)
    tag = str(imported.tag)
    try:
        gates = run_gates(
            candidate,
            imported,
            champion,
            registry,
            policy or PromotionSettings(),
            thresholds or DecisionSettings(),
        )
    except Exception:
        if created:  # a candidate that cannot even be checked must not stay in the store
            bentoml.models.delete(tag)
        raise
    if not all(gate.passed for gate in gates) and force_reason is None:
        if created:
            bentoml.models.delete(tag)
        return PromotionReport(candidate, tag, gates, promoted=False)
    alias = registry.champion_alias if role == "champion" else role
    client.set_registered_model_alias(registry.registered_model_name, alias, candidate.version)
    record_promotion(candidate, tag, registry, force_reason, role, share)
    if role == "champion" and current_alias(client, registry.registered_model_name, "canary"):
        client.delete_registered_model_alias(registry.registered_model_name, "canary")
    return PromotionReport(candidate, tag, gates, promoted=True)


def canary_alias_on(client: MlflowClient, registry: RegistrySettings, version: str) -> bool:
    """Whether the registry's ``canary`` alias points at this version (completed now)."""
    canary = current_alias(client, registry.registered_model_name, "canary")
    return canary is not None and canary.version == version


def remove_canary(registry: RegistrySettings) -> Promotion:
    """Take the canary out: the champion decides every application again (after a build)."""
    record = read_champion(registry.champion_file)
    if record is None or record.canary is None:
        raise LookupError("no canary to remove")
    mlflow.set_tracking_uri(registry.mlflow_tracking_uri)
    client = MlflowClient()
    if canary_alias_on(client, registry, record.canary.mlflow_version):
        client.delete_registered_model_alias(registry.registered_model_name, "canary")
    canary = record.canary
    write_champion(
        registry.champion_file, record.model_copy(update={"canary": None, "canary_share": 0.0})
    )
    return canary


def rollback(registry: RegistrySettings) -> Promotion:
    """Serve the previous champion again: MLflow alias and served tag move back together."""
    record = read_champion(registry.champion_file)
    if record is None or not record.history:
        raise LookupError("no previous champion to roll back to")
    previous, *older = record.history
    bentoml.models.get(previous.bento_model_tag)  # still in the store, or NotFound
    mlflow.set_tracking_uri(registry.mlflow_tracking_uri)
    MlflowClient().set_registered_model_alias(
        previous.registered_model, registry.champion_alias, previous.mlflow_version
    )
    write_champion(registry.champion_file, ChampionRecord(current=previous, history=older))
    return previous


def print_report(report: PromotionReport) -> None:
    for gate in report.gates:
        print(f"  [{'PASS' if gate.passed else 'FAIL'}] {gate.name}: {gate.detail}")
    verdict = "PROMOTED" if report.promoted else "REFUSED"
    print(
        f"{verdict} {report.candidate.name} v{report.candidate.version} as {report.bento_model_tag}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.promote", description=__doc__)
    parser.add_argument(
        "action", nargs="?", default="promote", choices=["promote", "rollback", "history"]
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--version", help="registered version number (default: newest)")
    which.add_argument("--alias", help="registered alias, e.g. challenger")
    parser.add_argument(
        "--as",
        dest="role",
        choices=["champion", "challenger", "canary"],
        default="champion",
        help="challenger: shadow-scored beside the champion, never answered; canary: decides "
        "--share of applications",
    )
    parser.add_argument(
        "--share", type=float, default=None, help="a canary's share of applications, (0, 1]"
    )
    parser.add_argument("--force", action="store_true", help="promote despite failed gates")
    parser.add_argument("--reason", help="why --force is justified (recorded)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    registry = RegistrySettings()

    if args.action == "history":
        record = read_champion(registry.champion_file)
        if record is not None and record.canary is not None:
            canary = record.canary
            print(
                f"canary: {canary.bento_model_tag} share={record.canary_share} "
                f"since {canary.promoted_at}"
            )
        for entry in [record.current, *record.history] if record else []:
            print(f"{entry.promoted_at}  {entry.bento_model_tag}  run={entry.mlflow_run_id}")
        return 0
    if args.action == "rollback":
        record = read_champion(registry.champion_file)
        if record is not None and record.canary is not None:
            removed = remove_canary(registry)
            print(
                f"REMOVED canary {removed.bento_model_tag} (champion "
                f"{record.bento_model_tag} unchanged; `rollback` again would roll the champion "
                "back); rebuild with `make build`. Running pods keep it until then: "
                "`python -m monitoring.traffic_split set --share 0` stops it now"
            )
            return 0
        restored = rollback(registry)
        print(f"ROLLED BACK to {restored.bento_model_tag}; rebuild with `make build`")
        return 0
    if args.force and not args.reason:
        parser.error("--force needs --reason")
    if (args.role == "canary") != (args.share is not None):
        parser.error("--share goes with --as canary, and a canary needs --share")
    if args.share is not None and not 0.0 < args.share <= 1.0:
        parser.error(f"--share is in (0, 1], not {args.share}")
    try:
        report = promote(
            registry,
            args.version,
            args.alias,
            args.reason if args.force else None,
            args.role,
            share=args.share or 0.0,
        )
    except (LookupError, ValueError) as refusal:
        print(f"REFUSED: {refusal}")
        return 1
    print_report(report)
    return 0 if report.promoted else 1


if __name__ == "__main__":
    sys.exit(main())
