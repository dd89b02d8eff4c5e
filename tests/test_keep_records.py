"""scripts.keep_records keeps a run's records and leaves out checkpoints and images."""

from pathlib import Path

from scripts import keep_records


def test_records_are_kept_and_checkpoints_and_images_left_out(tmp_path: Path):
    sweep = tmp_path / "sweep"
    files = {
        "multirun.yaml": "a",
        "0/.hydra/config.yaml": "b",
        "0/run.yaml": "c",
        "0/events.out.tfevents.1.vm.2.0": "d",
        "0/eval/metrics.yaml": "e",
        "0/eval/test_confusion_matrix.png": "f",
        "0/checkpoints/last.ckpt": "g",
        "0/checkpoints/notes.txt": "h",
    }
    for name, text in files.items():
        (sweep / name).parent.mkdir(parents=True, exist_ok=True)
        (sweep / name).write_text(text)
    dest = tmp_path / "results" / "row"
    assert keep_records.main([str(sweep), str(dest)]) == 0
    kept = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()}
    assert kept == {
        "multirun.yaml",
        "0/.hydra/config.yaml",
        "0/run.yaml",
        "0/events.out.tfevents.1.vm.2.0",
        "0/eval/metrics.yaml",
    }
    assert (dest / "0" / "run.yaml").read_text() == "c"


def test_a_kept_record_is_never_overwritten(tmp_path: Path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.yaml").write_text("new")
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "run.yaml").write_text("kept")
    assert keep_records.main([str(tmp_path / "run"), str(tmp_path / "dest")]) == 0
    assert (tmp_path / "dest" / "run.yaml").read_text() == "kept"


def test_a_missing_source_is_one_sentence(tmp_path: Path, capsys):
    assert keep_records.main([str(tmp_path / "nothing"), str(tmp_path / "dest")]) == 1
    assert capsys.readouterr().err.strip().endswith("is not a folder")
    assert not (tmp_path / "dest").exists()
