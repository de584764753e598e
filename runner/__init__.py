"""The model runner service: the network on its device, adaptive batching, scaled on its own."""
