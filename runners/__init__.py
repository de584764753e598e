"""The model runner service and its torch execution core."""
