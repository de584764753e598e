"""What the API records about its answers: Prometheus metrics, drift against the training
reference, the prediction log keyed by request id, and the outcome join that reads it."""
