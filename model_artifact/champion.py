"""The champion record: which BentoML model tag is served, where it came from, and the tags
served before it (so rollback is one command). Written by promotion, read once by each serving
process to learn which models to load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from model_artifact.settings import RegistrySettings


class Promotion(BaseModel):
    bento_model_tag: str
    registered_model: str
    mlflow_version: str
    mlflow_run_id: str
    promoted_at: str
    forced_reason: str | None = None


class ChampionRecord(BaseModel):
    current: Promotion
    history: list[Promotion] = []
    challenger: Promotion | None = None

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
class ServedTags:
    """The BentoML model tags a serving process loads."""

    champion: str
    challenger: str | None


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
    return ServedTags(champion, challenger)
