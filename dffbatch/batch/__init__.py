"""The batch layer over the library call: configs, discovery of stacks, jobs, the
runner, scheduling on a local process pool or Dask, the run store, the first-run compile."""
