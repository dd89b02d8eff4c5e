"""Look inside a trained model: ``python -m src.evaluate run=<run folder> [ckpt_path=...]``.

Rebuilds the run's model and data from its saved config (``<run>/.hydra/config.yaml``, whose
``_target_``s must be on the allow-list: ``src.targets``), loads the checkpoint its final test used
(run.yaml's ``tested_checkpoint``), and evaluates the test set (and the validation split when the
run had one): the metrics of the training curves (``src.lit.classifier.METRICS``: accuracy, loss,
...), per-class accuracy, the confusion matrix, the expected calibration error with a reliability
diagram, and a grid of the most confidently misclassified test images. Everything is written into
``<run>/eval/`` (``metrics.yaml`` and PNGs), into the run's TensorBoard log under ``eval/`` tags,
and to the run's MLflow or W&B run if it logged to one (``log_evaluation``).
"""

import logging
import sys
from pathlib import Path

import hydra
import matplotlib
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torchmetrics.classification import MulticlassCalibrationError, MulticlassConfusionMatrix

from src import build
from src.checks import CheckpointError, read_checkpoint
from src.config import CONFIG_DIR, ConfigError
from src.lit.classifier import METRICS, eval_metrics
from src.lit.tracking import log_evaluation
from src.run_folder import EVAL_DIR, EVAL_METRICS, RunFolder, RunFolderError
from src.targets import UntrustedTargetError

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

log = logging.getLogger(__name__)


class EvaluationError(ValueError):
    """A run or checkpoint that cannot be evaluated; the message says why."""


def load_classifier(cfg: DictConfig, checkpoint: dict, path: Path):
    """The run's classifier with the weights of ``checkpoint`` (read by ``read_checkpoint``)."""
    classifier = build.build_classifier(cfg)
    try:
        classifier.load_weights(checkpoint)
    except (KeyError, RuntimeError, ValueError) as e:
        raise EvaluationError(f"ckpt_path={path} does not fit the run's model ({e})") from None
    return classifier.eval()


@torch.inference_mode()
def predict(classifier, x: Tensor, batch_size: int) -> Tensor:
    """The classifier's logits of ``x``, in batches, as float32 on the CPU."""
    batches = (classifier(x[i : i + batch_size]) for i in range(0, len(x), batch_size))
    return torch.cat([logits.float().cpu() for logits in batches])


def evaluate_split(logits: Tensor, y: Tensor, num_classes: int, bins: int) -> dict:
    """The training metrics (``METRICS``: accuracy, loss, ...), and the per-class accuracy,
    confusion matrix and calibration of a split's predictions."""
    metrics = eval_metrics(num_classes)
    metrics.update(logits, y)
    results = {name: float(value) for name, value in metrics.compute().items()}
    probs = logits.softmax(dim=1)
    confusion = MulticlassConfusionMatrix(num_classes)(probs, y)  # rows: true, columns: predicted
    per_class = confusion.diag() / confusion.sum(dim=1).clamp(min=1)
    ece = MulticlassCalibrationError(num_classes, n_bins=bins, norm="l1")(probs, y)
    mean_conf, accuracy, count = reliability(probs, y, bins)
    return {
        **results,
        "ece": float(ece),
        "n": len(y),
        "per_class_acc": per_class.tolist(),
        "confusion_matrix": confusion.tolist(),
        # The reliability diagram's bins, so that it can be redrawn from the record alone.
        "reliability": {
            "confidence": mean_conf.tolist(),
            "accuracy": accuracy.tolist(),
            "count": count.long().tolist(),
        },
    }


def reliability(probs: Tensor, y: Tensor, bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per confidence bin: mean confidence, accuracy and count, binned as torchmetrics' ECE bins.

    ``bins`` equal bins [k/bins, (k+1)/bins) over [0, 1), and one more for a confidence of exactly
    1.0 (``bins + 1`` entries): so sum(|accuracy - confidence| * count) / n is its ECE.
    """
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == y).to(confidence.dtype)
    edges = torch.linspace(0, 1, bins + 1, dtype=confidence.dtype, device=confidence.device)
    index = torch.bucketize(confidence, edges, right=True) - 1
    count = torch.bincount(index, minlength=bins + 1).to(confidence.dtype)
    mean_conf = torch.bincount(index, confidence, minlength=bins + 1) / count.clamp(min=1)
    accuracy = torch.bincount(index, correct, minlength=bins + 1) / count.clamp(min=1)
    return mean_conf, accuracy, count


def plot_confusion(matrix: list[list[int]], classes: list[str], title: str) -> plt.Figure:
    m = torch.tensor(matrix, dtype=torch.float)
    fig, ax = plt.subplots(figsize=(7, 6))
    shares = (m / m.sum(dim=1, keepdim=True).clamp(min=1)).numpy()  # matplotlib takes NumPy
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in zip(torch.cartesian_prod(*[torch.arange(len(m))] * 2).tolist(),
                             m.flatten().tolist(), strict=True):  # fmt: skip
        ax.text(j, i, f"{int(count)}", ha="center", va="center", fontsize=7)
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), title=title,
           xlabel="predicted", ylabel="true")  # fmt: skip
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    fig.tight_layout()
    return fig


def plot_reliability(binned: dict[str, list], ece: float, title: str) -> plt.Figure:
    """The reliability diagram of a split's ``reliability`` bins (``evaluate_split``)."""
    # NumPy arrays for matplotlib (tensors go through a deprecated __array__ path there).
    mean_conf, accuracy, count = (
        torch.tensor(binned[k], dtype=torch.float).numpy()
        for k in ("confidence", "accuracy", "count")
    )
    bins = len(count) - 1
    # The bins' left edges; the last bar, half a bin wide at 1, is confidence exactly 1.0.
    lefts = (torch.arange(bins + 1) / bins).numpy()
    widths = [1 / bins] * bins + [0.5 / bins]
    fig, ax = plt.subplots(figsize=(5, 5))
    used = count > 0
    bars = dict(width=[w for w, u in zip(widths, used, strict=True) if u], align="edge")
    ax.bar(lefts[used], accuracy[used], edgecolor="black", label="accuracy", **bars)
    ax.bar(lefts[used], (mean_conf - accuracy)[used], bottom=accuracy[used], color="red",
           alpha=0.3, label="gap to confidence", **bars)  # fmt: skip
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set(xlim=(0, 1 + 0.5 / bins), ylim=(0, 1), xlabel="confidence", ylabel="accuracy",
           title=f"{title} (ECE {ece:.4f})")  # fmt: skip
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def plot_misclassified(
    images: Tensor, probs: Tensor, y: Tensor, classes: list[str], count: int
) -> plt.Figure:
    """The ``count`` wrong predictions made with the highest confidence, with their labels."""
    confidence, predicted = probs.max(dim=1)
    wrong = (predicted != y).nonzero().flatten()
    worst = wrong[confidence[wrong].argsort(descending=True)[:count]]
    cols = max(1, min(6, len(worst)))
    rows = max(1, -(-len(worst) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, worst.tolist(), strict=False):
        image = images[i].permute(1, 2, 0).numpy()  # height, width, channels
        if image.shape[2] == 1:  # one channel: grey levels, not a colour map
            ax.imshow(image[:, :, 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(image)
        ax.set_title(f"true {classes[y[i]]}\npred {classes[predicted[i]]} {confidence[i]:.2f}",
                     fontsize=8)  # fmt: skip
    fig.suptitle("Most confidently misclassified test images")
    fig.tight_layout()
    return fig


def evaluate(cfg: DictConfig) -> dict:
    """Evaluate the run ``cfg.run``; write ``eval/`` and TensorBoard events; return the metrics."""
    try:
        folder = RunFolder.open(cfg.run)
        train_cfg = folder.config(trusted=cfg.trusted_targets)
    except (RunFolderError, UntrustedTargetError) as e:
        raise EvaluationError(str(e)) from None
    run_dir = folder.path
    path = Path(cfg.ckpt_path) if cfg.ckpt_path else folder.tested_checkpoint()
    try:  # read without running its code, and refused if it holds another model
        checkpoint = read_checkpoint(path, train_cfg.model._target_)
    except CheckpointError as e:
        raise EvaluationError(str(e)) from None
    try:
        classifier = load_classifier(train_cfg, checkpoint, path)
        datamodule = build.build_datamodule(train_cfg)
    except ConfigError as e:  # e.g. a run of older code whose config this code reads otherwise
        raise EvaluationError(
            f"{run_dir}'s config does not build with this checkout ({e}): evaluate it with the "
            "commit its run.yaml names"
        ) from None
    datamodule.prepare_data()
    datamodule.setup("test")
    num_classes = int(train_cfg.data.num_classes)
    classes = list(datamodule.class_names)
    splits = [s for s in ("val", "test") if s in datamodule.splits]

    out_dir = run_dir / EVAL_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    step = int(checkpoint.get("global_step", 0))
    results: dict = {"checkpoint": folder.relative(path), "step": step, "classes": classes}
    scalars, figure_files = {}, {}  # by tag, for the run's other loggers (log_evaluation)
    with SummaryWriter(log_dir=str(run_dir)) as writer:  # a new event file beside training's
        for split in splits:
            x, y = datamodule.splits[split]
            logits = predict(classifier, x, datamodule.eval_batch_size)
            metrics = evaluate_split(logits, y.cpu(), num_classes, cfg.calibration_bins)
            probs = logits.softmax(dim=1)
            results[split] = metrics
            split_scalars = {f"eval/{split}/{k}": metrics[k] for k in (*METRICS, "ece")}
            for name, value in zip(classes, metrics["per_class_acc"], strict=True):
                split_scalars[f"eval/{split}/acc_{name}"] = value
            for tag, value in split_scalars.items():
                writer.add_scalar(tag, value, step)
            scalars.update(split_scalars)
            figures = {
                "confusion_matrix": plot_confusion(
                    metrics["confusion_matrix"], classes, f"{split} confusion matrix"
                ),
                "reliability": plot_reliability(
                    metrics["reliability"], metrics["ece"], f"{split} reliability"
                ),
            }
            if split == "test":
                raw_test_images = datamodule.load()[2]  # uint8, in the test split's order
                figures["misclassified"] = plot_misclassified(
                    raw_test_images, probs, y.cpu(), classes, cfg.misclassified
                )
            for name, fig in figures.items():
                figure_files[f"eval/{split}/{name}"] = out_dir / f"{split}_{name}.png"
                fig.savefig(figure_files[f"eval/{split}/{name}"], dpi=100)
                writer.add_figure(f"eval/{split}/{name}", fig, step)  # closes the figure
    (run_dir / EVAL_METRICS).write_text(OmegaConf.to_yaml(results))
    # The run's MLflow and W&B runs, if it has them, get the evaluation too.
    log_evaluation(train_cfg.get("logger"), run_dir, step, scalars, figure_files)
    return results


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    try:
        results = evaluate(cfg)
    except EvaluationError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    summary = ", ".join(
        f"{s}/acc {results[s]['acc']:.4f}, {s}/ece {results[s]['ece']:.4f}"
        for s in ("val", "test") if s in results
    )  # fmt: skip
    log.info(f"{summary} | written to {Path(cfg.run) / EVAL_DIR}")


if __name__ == "__main__":
    main()
