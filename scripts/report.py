"""RESULTS.md's tables, generated from run folders: mean ± std over seeds, per configuration.

    python -m scripts.report                        # print every table of RESULTS.md
    python -m scripts.report --write                # rewrite them in RESULTS.md
    python -m scripts.report --results DIR --markdown FILE [--write]

RESULTS.md marks each generated table with ``<!-- report:begin NAME -->`` and
``<!-- report:end -->``; everything between the two is replaced by the table of the runs under
``RESULTS/NAME/`` (any depth: a sweep folder's numbered jobs, or single run folders).

A run is a run folder (``src.run_folder``). Which runs form a row, and their mean ± std, is
``src.results``'s; this tool formats the rows and fills RESULTS.md.
"""

import argparse
import re
import sys
from pathlib import Path

from src.results import COLUMNS, find_runs, group_by_config, summarize_group

ROOT = Path(__file__).resolve().parents[1]

MARKERS = re.compile(
    r"(<!-- report:begin (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- report:end -->)", re.DOTALL
)


def format_cell(stat: tuple[float, float, int], completed: int) -> str:
    """``mean ± std``; with the count when fewer runs than completed have the value."""
    mean, std, n = stat
    if n == 0:
        return "–"
    cell = f"{mean:.4f}" if n == 1 else f"{mean:.4f} ± {std:.4f}"
    return cell if n == completed else f"{cell} (n={n})"


def table(folder: Path) -> str:
    """The Markdown table of the runs under ``folder``, one row per configuration."""
    runs = find_runs(folder)
    if not runs:
        shown = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
        return f"(no runs under {shown} yet)\n"
    rows = [summarize_group(g) for g in group_by_config(runs)]
    titles = [t for t in COLUMNS if any(r[t][2] for r in rows)]
    lines = [
        "| configuration | n (completed / runs) | " + " | ".join(titles) + " |",
        "|---|---:|" + "---:|" * len(titles),
    ]
    for r in rows:
        cells = [f"`{r['settings']}`", f"{r['completed']} / {r['runs']}"]
        lines.append(
            "| " + " | ".join(cells + [format_cell(r[t], r["completed"]) for t in titles]) + " |"
        )
    return "\n".join(lines) + "\n"


def fill(markdown: str, results: Path) -> str:
    """``markdown`` with every marked table regenerated from ``results/NAME``."""

    def regenerate(match: re.Match) -> str:
        return match.group(1) + table(results / match.group("name")) + match.group(4)

    return MARKERS.sub(regenerate, markdown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results",
                        help="folder of the tables' run folders (default: results/)")  # fmt: skip
    parser.add_argument("--markdown", type=Path, default=ROOT / "RESULTS.md")
    parser.add_argument("--write", action="store_true", help="rewrite the tables in --markdown")
    args = parser.parse_args(argv)
    try:
        text = args.markdown.read_text()
    except OSError as e:
        print(f"error: cannot read {args.markdown}: {e.strerror}", file=sys.stderr)
        return 1
    names = [m.group("name") for m in MARKERS.finditer(text)]
    if not names:
        print(f"error: {args.markdown} has no <!-- report:begin NAME --> markers", file=sys.stderr)
        return 1
    if args.write:
        args.markdown.write_text(fill(text, args.results))
    for name in names:
        print(f"## {name}\n\n{table(args.results / name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
