"""Training and promotion knobs. The network size is configuration, so a larger variant for a
GPU is an environment change, not a code change."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TrainingConfig(BaseSettings):
    """How a candidate is trained (env ``CREDIT_RISK_TRAIN_*``)."""

    model_config = SettingsConfigDict(
        env_prefix="CREDIT_RISK_TRAIN_", extra="ignore", protected_namespaces=()
    )

    seed: int = Field(42, description="Weight initialisation and batch order.")
    split_seed: int = Field(
        42,
        description="Data split; fixed, so every candidate is gated on the same test rows.",
    )
    sample_rows: int | None = Field(None, ge=50, description="Subsample for fast runs.")
    hidden: tuple[int, ...] = Field((64,), description="Hidden layer widths of the MLP.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after each hidden layer.")
    epochs: int = Field(60, ge=1, description="Most epochs to train.")
    batch_size: int = Field(128, ge=1, description="Mini-batch rows.")
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate.")
    weight_decay: float = Field(1e-4, ge=0, description="Adam weight decay.")
    patience: int = Field(10, ge=1, description="Epochs without validation gain before stopping.")
    golden_rows: int = Field(25, ge=1, description="Test rows logged as the golden set.")
    register_model: bool = Field(True, description="Register the logged model in MLflow.")


class PromotionSettings(BaseSettings):
    """The gates a candidate must pass (env ``CREDIT_RISK_*``)."""

    model_config = SettingsConfigDict(env_prefix="CREDIT_RISK_", extra="ignore")

    promotion_min_test_auc: float = Field(
        0.75, ge=0, le=1, description="Test ROC AUC floor of any candidate."
    )
    promotion_max_auc_drop: float = Field(
        0.02, ge=0, le=1, description="Largest test AUC drop allowed against the champion."
    )
    golden_tolerance: float = Field(
        1e-5, gt=0, description="Largest absolute probability error of the imported golden set."
    )
