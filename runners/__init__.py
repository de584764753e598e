"""The model runner service alone: the network on its device, its model calls in the matrix
wire format, BentoML's adaptive batching for BentoML's own clients. Scaled apart from the API
(``bentoml serve runners.service:ModelRunner``) or spawned beside it by ``service.py``."""
