"""Load generation: what the load tools send (``traffic``, the Locust scenario ``locustfile``
paced open-loop by ``pacing`` and run headless by ``locust_run``; the closed-loop ``burst``),
what a generator saw (``load_result``), and the served process it is sent to (``server``).
Kept apart from what the figures are used for (``loadtests.bench``, ``loadtests.sizing``): one
generator, read the same way by every tool."""
