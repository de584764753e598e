"""Benchmarks that compare, not size: the served model beside ``mlflow models serve`` and the
framework floors (``side_by_side``, `make bench`), batch scoring's rows/s (``batch_throughput``,
`make batch-bench`), and the served Bento's CPU per process (``process_split``,
`make process-split`)."""
