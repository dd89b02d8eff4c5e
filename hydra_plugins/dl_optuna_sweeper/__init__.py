"""The project's Hydra sweeper on Optuna 5: ``hydra/sweeper=dl_optuna``.

A study that persists in the sweep folder, resumes, prunes through its storage and is shared by
any number of sweep processes. ``hydra_plugins`` is a namespace package (no ``__init__.py``), so
Hydra finds this plugin next to its own ones.
"""
