"""What both serving processes run, the API's and the runner's: the ASGI plumbing, the drain on
SIGTERM, coalescing of model calls, the API->runner wire format, the models a process holds,
and worker start-up. Neither service lives here (``service.py``, ``runners/``)."""
