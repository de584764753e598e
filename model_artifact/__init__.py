"""The model as an artifact: the network, the torch scorer, the bundle that ships with the
weights, the loaded MLflow model, the champion record. Shared by training, promotion, both
services and batch scoring; imports only the domain."""
