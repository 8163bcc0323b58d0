"""alexnet-batch: alexnet-run's predictions for folders too large for one machine, on Ray Data.

    read_binary_files (Ray reads the bytes) -> map_batches(BatchPredictor, a pool of actors, each
    holding the model once) -> the driver writes Parquet (or JSON Lines) parts into --output DIR

- inputs.py lists the files once, on the driver: the rows to expect, and the errors found before reading.
- job.py starts (or joins) the Ray cluster and runs the pipeline; actors x threads = the cluster's CPUs.
- results.py is the output folder: its manifest, atomic part files, and what a resumed run skips.
- cli.py is the command.

Ray (the [ray] extra) and pyarrow (which it installs) are imported inside functions: the base
install imports this package without them and says which extra to install.
"""
