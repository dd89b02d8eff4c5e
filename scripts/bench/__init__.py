"""The performance tools, one entry with subcommands: ``python -m scripts.bench <subcommand>``
(``__main__``; ``docs/benchmark.md`` explains the tables). One module per subcommand:

- ``steps``: ms per training step through ``src.train`` vs a bare loop, test pass, validation
  share, data loading;
- ``whole_runs``: whole ``python -m src.train`` runs timed from outside, start-up, a multirun;
- ``fixed_cost``: the fixed cost per step, rung by rung;
- ``compare``: the whole-run step time of two checkouts;
- ``batchnorm``, ``diagnostics``, ``numpy_mlp``: one batch norm step, the diagnostics callback's
  cost, a bare NumPy MLP step against PyTorch's;
- ``host_copies``, ``gpu_check``: the checks that need a GPU.

and the parts they share:

- ``timing``: the timing core: timing callbacks for a real fit, ``time_block`` for a bare loop,
  ``op_ms`` for one operation, memory probes;
- ``settings``: the models, their settings, and runs built and fitted as ``src.train`` does;
- ``loops``: the bare training loops that a run through ``src.train`` is compared with;
- ``evaluation``: one test pass, and the share of validation in a run;
- ``startup``: launch to first training step, the data module's load and setup;
- ``multirun``: a multirun against one run;
- ``report``: the Markdown tables of ``steps`` and ``whole-runs``.

Benchmark code only: nothing in ``src`` imports it.
"""
