"""scripts.report: grouping by config but for the seed, mean ± std, the tables in Markdown."""

import statistics

import pytest
import yaml

from scripts import report


def make_run(folder, seed, metrics, status="completed", lr=0.002, ece=None, extra=()):
    """A run folder as src.train leaves it: .hydra/config.yaml, overrides.yaml, run.yaml."""
    (folder / ".hydra").mkdir(parents=True)
    config = {"seed": seed, "model": {"seed": "${seed}", "init": "assignment"},
              "optimizer": {"lr": lr}}  # fmt: skip
    overrides = [f"seed={seed}", "data.root=/data", f"optimizer.lr={lr}", *extra]
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    record = {"status": status, **({"metrics": metrics} if status == "completed" else {})}
    (folder / "run.yaml").write_text(yaml.safe_dump(record))
    if ece is not None:
        (folder / "eval").mkdir()
        (folder / "eval" / "metrics.yaml").write_text(yaml.safe_dump({"test": {"ece": ece}}))


def metrics(val, test, loss=1.5):
    return {"best_val/acc": val, "final_test/acc": test, "final_test/loss": loss}


@pytest.fixture
def results(tmp_path):
    sweep = tmp_path / "results" / "lr"
    for job, (seed, lr, val, test) in enumerate(
        [(0, 0.002, 0.40, 0.41), (1, 0.002, 0.44, 0.43), (2, 0.002, 0.45, 0.48),
         (0, 0.01, 0.50, 0.52), (1, 0.01, 0.54, 0.50)]
    ):  # fmt: skip
        make_run(sweep / str(job), seed, metrics(val, test), lr=lr, ece=0.1 * (job + 1))
    make_run(sweep / "5", 2, None, status="failed", lr=0.01)
    return tmp_path / "results"


def test_runs_group_by_config_but_for_the_seed(results):
    groups = report.group_by_config(report.find_runs(results / "lr"))
    assert [[r["dir"].name for r in g] for g in groups] == [["0", "1", "2"], ["3", "4", "5"]]


def test_mean_std_and_n_over_completed_runs(results):
    rows = [report.summarize_group(g) for g in report.group_by_config(report.find_runs(results))]
    first, second = rows
    assert first["settings"] == "optimizer.lr=0.002"  # seed and data.root name no setting
    mean, std, n = first["test acc"]
    assert (mean, std, n) == pytest.approx((0.44, statistics.stdev([0.41, 0.43, 0.48]), 3))
    assert first["test ECE"] == pytest.approx((0.2, 0.1, 3))
    assert (second["completed"], second["runs"]) == (2, 3)  # the failed run counts, unaveraged
    assert second["val acc"] == pytest.approx((0.52, statistics.stdev([0.50, 0.54]), 2))


def test_the_marked_tables_of_a_markdown_file_are_rewritten(results, tmp_path):
    page = tmp_path / "RESULTS.md"
    page.write_text("intro\n<!-- report:begin lr -->\n| typed | 0.99 |\n<!-- report:end -->\nend\n")
    assert report.main(["--results", str(results), "--markdown", str(page), "--write"]) == 0
    text = page.read_text()
    assert "0.99" not in text and text.startswith("intro\n") and text.endswith("end\n")
    assert f"| `optimizer.lr=0.002` | 3 / 3 | {0.43:.4f} ± {0.0265:.4f} |" in text
    assert "| `optimizer.lr=0.01` | 2 / 3 |" in text
    again = page.read_text()
    report.main(["--results", str(results), "--markdown", str(page), "--write"])
    assert page.read_text() == again  # regenerating changes nothing


def test_a_value_of_fewer_runs_shows_its_n_and_a_missing_folder_says_so(tmp_path):
    make_run(tmp_path / "results" / "one" / "run", 0, metrics(0.4, 0.5))
    make_run(tmp_path / "results" / "one" / "again", 1, metrics(0.4, 0.5), ece=0.25)
    assert "| 0.4000 ± 0.0000 | 0.5000 ± 0.0000 | 1.5000 ± 0.0000 | 0.2500 (n=1) |" in report.table(
        tmp_path / "results" / "one"
    )
    assert "no runs under" in report.table(tmp_path / "results" / "none")
