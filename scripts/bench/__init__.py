"""The speed benchmark of ``scripts/benchmark.py``, one module per thing it measures.

- ``timing``: memory probes, timing callbacks for a real fit, ``time_block`` for a bare one;
- ``loops``: the bare training loops that a run through ``src.train`` is compared with;
- ``runs``: the benchmark's config, and building and fitting runs as ``src.train`` does;
- ``steps``: ms per training step, project vs bare loop;
- ``evaluation``: one test pass, and the share of validation in a run;
- ``startup``: from launch to the first training step, and the data module's load and setup;
- ``report``: the Markdown tables.

Benchmark code only: nothing in ``src`` imports it.
"""
