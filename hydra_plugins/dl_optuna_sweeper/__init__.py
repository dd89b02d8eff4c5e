"""The project's Hydra sweeper on Optuna 5: ``hydra/sweeper=dl_optuna``.

A study that persists in the sweep folder, resumes, prunes through its storage and is shared by
any number of sweep processes. ``hydra_plugins`` is a namespace package (no ``__init__.py``), so
Hydra finds this plugin next to its own ones.

One job per module: ``config`` (the config node), ``space`` (the search space and its checks),
``search`` (what a search is: its record, its reporter), ``study`` (storage, the study and its
record, the pruner), ``sampling`` (a sampler seeded per trial), ``owners`` (which trials still
run), ``sweeper`` (the loop of asking, launching and telling), ``results``
(``optimization_results.yaml``), ``console`` (what a sweep prints), ``report`` (the job side:
the Lightning callback that reports to the trial) and ``figures``.
"""
