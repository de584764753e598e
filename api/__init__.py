"""The API process: the /score handler and its request checks, the scoring pipeline, the scorer
(in-process, or the runner's client with coalescing, retries and a breaker), shadow scoring."""
