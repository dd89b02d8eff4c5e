"""The user's tools, each run from the repository root as ``python -m scripts.<tool>``:

- ``summarize``: one table of a sweep's jobs, best validation accuracy first;
- ``report``: RESULTS.md's tables, mean ± std over seeds, from the run records in ``results/``;
- ``plot_curves``: loss and accuracy curves of runs;
- ``plot_diagnostics``: a per-layer diagnostic (``callbacks=diagnostics``) of several runs;
- ``keep_records``: copy runs' records into ``results/`` for committing.

They read run folders through ``src.run_folder`` and curves through ``src.scalars``. The
performance tools are the other workshop: ``python -m scripts.bench <subcommand>``
(``scripts/bench/``).
"""
