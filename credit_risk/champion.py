"""The champion record: which BentoML model tag is served, where it came from, and the tags
served before it (so rollback is one command). Written by promotion, read by the services."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel


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
