"""Principal reasons for an adverse decision: which contract fields pushed this applicant's
default probability up, and by how much, in the words credit policy chose.

Credit rules (ECOA / Regulation B, FCRA) ask for the specific principal reasons, describing the
factors the model actually scored. The model scores engineered columns, so each column's
attribution (``model_artifact/attribution.py``) is mapped back to the field it comes from: a
numeric column, its missing flag and every one-hot level of a category belong to their field;
a ratio column comes from two fields and is split equally between them. A field's reason is the
sum of its columns' contributions; the principal reasons are the fields with the largest
positive sums (those that raised the probability), at most ``max_reasons`` of them. The texts
live in a YAML file (``reason_texts.yaml`` beside this module, or the file the policy names,
``CREDIT_RISK_REASONS_TEXTS_FILE``), so policy edits wording without a code change.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, Field

from credit_risk.contract import CONTRACT_FIELDS, PrincipalReason
from credit_risk.features import RATIOS

DEFAULT_TEXTS_FILE = Path(__file__).with_name("reason_texts.yaml")
ADVERSE: dict[str, frozenset[str]] = {
    "adverse": frozenset({"review", "decline"}),
    "decline": frozenset({"decline"}),
    "requested": frozenset(),
}


class ReasonPolicy(BaseModel):
    """When reasons are computed and how they read. Entry points read it from the environment
    (``model_artifact.settings.ReasonPolicy``)."""

    # Declines by default: an attribution cost a decline about 30% of its throughput and half
    # its capacity at p99 <= 100 ms in process (docs/performance.md), and a review is not yet
    # an adverse action; `adverse` adds reviews, `"explain": true` asks for any request.
    for_decisions: Literal["adverse", "decline", "requested"] = Field(
        "decline",
        description="Reasons for `decline` only, `adverse` (review too), or only `requested`.",
    )
    max_reasons: int = Field(4, ge=1, le=len(CONTRACT_FIELDS), description="Most reasons given.")
    texts_file: Path = Field(
        DEFAULT_TEXTS_FILE, description="YAML of a text per reason code (credit policy's words)."
    )


def column_weights(feature_names: Sequence[str]) -> np.ndarray:
    """(width, fields) matrix taking column contributions to field contributions."""
    index = {field: i for i, field in enumerate(CONTRACT_FIELDS)}
    weights = np.zeros((len(feature_names), len(CONTRACT_FIELDS)))
    for column, name in enumerate(feature_names):
        kind, _, rest = name.partition("__")
        if kind == "ratio":
            for field in RATIOS[rest]:
                weights[column, index[field]] = 0.5
        else:
            weights[column, index[rest.split("=")[0]]] = 1.0
    return weights


def load_texts(path: Path) -> dict[str, str]:
    """Reason code -> text, refusing a file that leaves a contract field without one."""
    texts = yaml.safe_load(path.read_text())
    if not isinstance(texts, dict):
        raise ValueError(f"{path}: expected a mapping of reason code to text")
    missing = sorted(set(CONTRACT_FIELDS) - set(texts))
    if missing:
        raise ValueError(f"{path}: no text for reason codes {missing}")
    return {str(code): str(text) for code, text in texts.items()}


class ReasonCoder:
    """Built once per loaded model: its columns' map to fields, and the policy's texts."""

    def __init__(self, feature_names: Sequence[str], settings: ReasonPolicy) -> None:
        self.weights = column_weights(feature_names)
        self.texts = load_texts(settings.texts_file)
        self.max_reasons = settings.max_reasons
        self.decisions = ADVERSE[settings.for_decisions]

    def rows_to_explain(self, decisions: Sequence[str], requested: bool) -> np.ndarray:
        """Indices of the rows that get reasons: every row when asked, else adverse ones."""
        return np.flatnonzero([requested or d in self.decisions for d in decisions])

    def field_contributions(self, attributions: np.ndarray) -> np.ndarray:
        """(n, width) column contributions -> (n, fields) in ``CONTRACT_FIELDS`` order."""
        contributions: np.ndarray = np.asarray(attributions, dtype=np.float64) @ self.weights
        return contributions

    def for_rows(
        self, n_rows: int, rows: np.ndarray, attributions: np.ndarray
    ) -> list[list[PrincipalReason]]:
        """Reasons for every row of a batch: those of ``rows`` (whose ``attributions`` these
        are, in order), none for the others."""
        reasons: list[list[PrincipalReason]] = [[] for _ in range(n_rows)]
        for row, found in zip(rows.tolist(), self.principal(attributions), strict=True):
            reasons[row] = found
        return reasons

    def ranked(self, attributions: np.ndarray) -> list[list[tuple[str, float]]]:
        """Per row, (field, contribution rounded to 1e-6) of the largest positive
        contributions, largest first: the one ranking both the API and files use."""
        contributions = self.field_contributions(attributions)
        order = np.argsort(-contributions, axis=1, kind="stable")[:, : self.max_reasons]
        return [
            [(CONTRACT_FIELDS[i], round(float(row[i]), 6)) for i in top if row[i] > 0]
            for row, top in zip(contributions, order.tolist(), strict=True)
        ]

    def principal(self, attributions: np.ndarray) -> list[list[PrincipalReason]]:
        """Per row, the principal reasons as the API answers them, with policy's texts."""
        return [
            [
                PrincipalReason(code=code, contribution=value, text=self.texts[code])
                for code, value in row
            ]
            for row in self.ranked(attributions)
        ]

    def cells(self, n_rows: int, rows: np.ndarray, attributions: np.ndarray) -> list[str]:
        """``reason_string`` of every row of a file, built without a model object per reason
        (a file of a million rows has hundreds of thousands of adverse ones)."""
        cells = [""] * n_rows
        for row, ranked in zip(rows.tolist(), self.ranked(attributions), strict=True):
            cells[row] = cell(ranked)
        return cells


def cell(ranked: Sequence[tuple[str, float]]) -> str:
    """A row's reasons in one cell, for files: ``records:+0.1820|income:+0.0712``."""
    return "|".join(f"{code}:{value:+.4f}" for code, value in ranked)


def reason_string(reasons: Sequence[PrincipalReason]) -> str:
    """The file cell of reasons as the API answered them (to compare the two paths)."""
    return cell([(r.code, r.contribution) for r in reasons])
