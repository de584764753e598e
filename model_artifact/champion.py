"""The champion record: which BentoML model tag is served, where it came from, the tags
served before it (so rollback is one command), and the challenger or canary beside it.
Written by promotion, read once by each serving process to learn which models to load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from model_artifact.settings import RegistrySettings


class Promotion(BaseModel):
    bento_model_tag: str
    registered_model: str
    mlflow_version: str
    mlflow_run_id: str
    promoted_at: str
    forced_reason: str | None = None


class ChampionRecord(BaseModel):
    """``challenger``: shadow-scored, never answered. ``canary``: decides ``canary_share`` of
    live applications (``credit_risk.traffic``) from the Bento's start; a running service
    may lower or raise that share (``monitoring.traffic_split``)."""

    current: Promotion
    history: list[Promotion] = []
    challenger: Promotion | None = None
    canary: Promotion | None = None
    canary_share: float = Field(0.0, ge=0.0, le=1.0)

    @property
    def bento_model_tag(self) -> str:
        return self.current.bento_model_tag


def read_champion(path: Path) -> ChampionRecord | None:
    return ChampionRecord.model_validate_json(path.read_text()) if path.is_file() else None


def write_champion(path: Path, record: ChampionRecord) -> None:
    """Write atomically so a service starting mid-promotion never reads half a file."""
    partial = path.with_suffix(".tmp")
    partial.write_text(record.model_dump_json(indent=1))
    partial.replace(path)


@dataclass(frozen=True)
class CanaryTag:
    """The canary a serving process loads: its tag, when it was promoted (what its live share
    is keyed by, ``monitoring.traffic_split``) and the share it starts with."""

    tag: str
    promoted_at: str
    share: float


@dataclass(frozen=True)
class ServedTags:
    """The BentoML model tags a serving process loads."""

    champion: str
    challenger: str | None
    canary: CanaryTag | None = None


def resolve_served_tags(registry: RegistrySettings) -> ServedTags:
    """Explicit tags from the environment win; otherwise the champion (and challenger) that
    promotion recorded. Never an unpromoted model: no record and no pin is an error. An empty
    ``CREDIT_RISK_CHALLENGER_TAG`` turns a recorded challenger off."""
    record = read_champion(registry.champion_file)
    champion = registry.model_tag or (record.bento_model_tag if record else None)
    if champion is None:
        raise LookupError(
            f"no champion recorded in {registry.champion_file}: run `make promote` "
            "(python -m training.promote) or set CREDIT_RISK_MODEL_TAG"
        )
    if registry.challenger_tag is not None:
        challenger = registry.challenger_tag or None
    else:
        challenger = record.challenger.bento_model_tag if record and record.challenger else None
    return ServedTags(champion, challenger, served_canary(record, registry))


def served_canary(record: ChampionRecord | None, registry: RegistrySettings) -> CanaryTag | None:
    """The recorded canary, or the one the environment pins (``CREDIT_RISK_CANARY_TAG``, its
    share from ``CREDIT_RISK_CANARY_SHARE``); an empty tag turns a recorded canary off."""
    recorded = record.canary if record else None
    if registry.canary_tag is not None:
        if not registry.canary_tag:
            return None
        same = recorded is not None and recorded.bento_model_tag == registry.canary_tag
        default_share = record.canary_share if record and same else 0.0
        share = default_share if registry.canary_share is None else registry.canary_share
        # a pin's live share is keyed by its share: pinning it again at another share starts
        # afresh, at the same share it resumes (a rollback of that pin holds)
        promoted_at = recorded.promoted_at if recorded and same else f"pinned at {share}"
        return CanaryTag(registry.canary_tag, promoted_at, share)
    if recorded is None or record is None:
        return None
    share = record.canary_share if registry.canary_share is None else registry.canary_share
    return CanaryTag(recorded.bento_model_tag, recorded.promoted_at, share)
