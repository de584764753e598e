"""Training, MLflow logging and gated promotion into the BentoML store."""
