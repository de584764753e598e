"""The API process: the BentoML service, its request guard, the scorer (in-process or the
runner, with coalescing and retries), shadow scoring of a challenger."""
