#!/usr/bin/env bash
# Write constraints.txt: the exact version of every package in the project's dependency tree
# (pyproject.toml with the dev extra: sweeps, report, tests, lint), as installed in this
# environment, the one that made the records in results/.
#
# `pip freeze` lists what is installed; uv resolves pyproject.toml's tree with those versions as
# constraints, so the file holds the tree only, each pin the installed version, with the packages
# that pull it in. It needs uv (`pip install -e ".[lock]"`) and the package index for metadata.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip freeze --exclude-editable \
  | uv pip compile pyproject.toml --extra dev --constraint - --annotation-style line \
      --custom-compile-command "bash scripts/lock.sh" --quiet -o constraints.txt
# Every pin must be the installed version: a package missing here would have been resolved to
# the newest release instead.
python - <<'PY'
import re, sys
from importlib import metadata
pins = re.findall(r"^([\w.-]+)==([^\s;]+)", open("constraints.txt").read(), re.M)
wrong = []
for name, version in pins:
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        installed = None
    if installed != version:
        wrong.append(f"{name}=={version} (installed: {installed})")
if wrong:
    sys.exit("constraints.txt pins versions that are not installed here: " + ", ".join(wrong))
print(f"constraints.txt: {len(pins)} packages, each pinned to its installed version")
PY
