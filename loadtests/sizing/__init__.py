"""Right-sizing the deployment (`make size`, `make size-verify`): measure each configuration's
capacity at each SLO (``measure``, ``knee``), the cheapest plan and the one set of deployment
values per stage (``recommend``), the run's report and the Kubernetes profiles written from
those values (``report``, ``profiles``), the verification (``verify``), and the runner stage
per device (``runner_sweep`` measures it on a GPU machine, ``device_sizing`` prices it)."""
