"""Beyond one machine: the run's planes as tasks of an existing Dask cluster (``SCHEDULER``)."""
