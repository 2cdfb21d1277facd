"""The tracked training task: what ``occupancy-mlops train --dataset-id ID`` runs, and what an agent
runs when the scheduler clones this task with another ``General/CLEARML_DATASET_ID``.

Run it directly as ``python -m training.task --dataset-id ID`` (ClearML records that entry point, so
an agent re-runs the same module with the clone's parameters injected into ``config``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from training.config import TrainingConfig, default_config
from training.data import LABEL_COLUMN, load_labeled
from training.evaluate import GatePolicy, Metrics, compute_metrics, confusion, roc_points
from training.train import TrainedModel, train_model

PROJECT = "Occupancy"
TASK_NAME = "train occupancy model"


def dataset_frame(dataset_id: str) -> Any:
    """The validated rows of every labeled file of a dataset version (read-only cached copy)."""
    from clearml import Dataset

    folder = Dataset.get(dataset_id=dataset_id).get_local_copy()
    return load_labeled([Path(folder)])


def _report_plots(logger: Any, name: str, labels: Any, proba: Any) -> None:
    logger.report_confusion_matrix(
        f"confusion matrix ({name})",
        "occupancy",
        iteration=0,
        matrix=confusion(labels, proba),
        xaxis="predicted",
        yaxis="actual",
        xlabels=["empty", "occupied"],
        ylabels=["empty", "occupied"],
    )
    fpr, tpr = roc_points(labels, proba)
    logger.report_scatter2d(
        f"ROC ({name})",
        "occupancy",
        iteration=0,
        scatter=list(zip(fpr, tpr, strict=True)),
        xaxis="false positive rate",
        yaxis="true positive rate",
        mode="lines",
    )


def _report_metrics(logger: Any, name: str, metrics: Metrics) -> None:
    for key in ("accuracy", "f1", "roc_auc", "brier", "ece"):
        logger.report_single_value(f"{name}/{key}", getattr(metrics, key))


def register_model(task: Any, trained: TrainedModel, folder: Path, tags: list[str]) -> Any:
    """Upload the model folder as the task's output model, with searchable metadata."""
    from clearml import OutputModel

    model = OutputModel(task=task, name=trained.config.MODEL_NAME, framework="Keras", tags=tags)
    model.update_weights_package(weights_path=str(folder), auto_delete_file=False)
    meta = trained.metadata()
    flat = {
        "dataset_id": meta.get("dataset_id", ""),
        "training_task_id": task.id,
        "validation_accuracy": f"{trained.validation.accuracy:.6f}",
        "validation_brier": f"{trained.validation.brier:.6f}",
        "validation_ece": f"{trained.validation.ece:.6f}",
        "feature_names": ",".join(trained.schema.feature_names),
        "history_rows": str(trained.schema.history_rows),
        "versions": json.dumps(meta["versions"]),
    }
    if "evaluation" in meta:
        for key in ("accuracy", "brier", "ece"):
            flat[f"eval_{key}"] = f"{meta['evaluation'][key]:.6f}"
    for key, value in flat.items():
        model.set_metadata(key, value, "str")
    return model


def run(overrides: dict[str, Any] | None = None, project: str = PROJECT) -> dict[str, Any]:
    """Train on ``CLEARML_DATASET_ID`` as a tracked task; returns ids and metrics."""
    from clearml import Task

    task: Any = Task.init(
        project_name=project,
        task_name=TASK_NAME,
        task_type=Task.TaskTypes.training,
        auto_connect_frameworks=False,
        reuse_last_task_id=False,
    )
    config = default_config()
    config.update(overrides or {})
    task.connect(config)  # the "General" section: a clone overrides any key here
    cfg = TrainingConfig.from_mapping(config)
    if not cfg.CLEARML_DATASET_ID:
        raise SystemExit("CLEARML_DATASET_ID is empty: pass --dataset-id or set General/CLEARML_DATASET_ID")
    # fail early on a bad gate setting
    GatePolicy(
        cfg.GATE_FLOOR,
        cfg.GATE_TOLERANCE,
        cfg.EVAL_WINDOW,
        cfg.EVAL_WINDOW_MIN_ROWS,
        cfg.GATE_RECENT_CHAMPIONS,
    )
    frame = dataset_frame(cfg.CLEARML_DATASET_ID)
    eval_frame = dataset_frame(cfg.EVAL_DATASET_ID) if cfg.EVAL_DATASET_ID else None
    result = train_and_register(task, cfg, frame, eval_frame)
    print(json.dumps(result))
    return result


def train_and_register(task: Any, cfg: TrainingConfig, frame: Any, eval_frame: Any | None) -> dict[str, Any]:
    """Train on ``frame`` inside ``task``: curves, plots, metrics and the registered output model."""
    logger = task.get_logger()
    files, rooms = frame["source"].nunique(), frame["room"].nunique()
    print(f"training on dataset {cfg.CLEARML_DATASET_ID}: {len(frame):,} rows, {files} files, {rooms} rooms")

    def on_epoch(epoch: int, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            series = "validation" if key.startswith("val_") else "train"
            logger.report_scalar(key.removeprefix("val_"), series, value=value, iteration=epoch)

    trained = train_model(frame, cfg, on_epoch=on_epoch)
    trained.extra_metadata.update(dataset_id=cfg.CLEARML_DATASET_ID, training_task_id=task.id)
    _report_metrics(logger, "validation", trained.validation)
    result: dict[str, Any] = {"task_id": task.id, "validation": trained.validation.as_dict()}
    if eval_frame is not None:
        proba = trained.bundle().predict_proba(eval_frame)
        evaluation = compute_metrics(eval_frame[LABEL_COLUMN].to_numpy(), proba)
        trained.extra_metadata.update(eval_dataset_id=cfg.EVAL_DATASET_ID, evaluation=evaluation.as_dict())
        _report_metrics(logger, "evaluation", evaluation)
        _report_plots(logger, "evaluation", eval_frame[LABEL_COLUMN].to_numpy(), proba)
        result["evaluation"] = evaluation.as_dict()
    with tempfile.TemporaryDirectory() as tmp:
        folder = trained.save(Path(tmp) / "model")
        model = register_model(task, trained, folder, tags=[f"dataset:{cfg.CLEARML_DATASET_ID}"])
        task.flush(wait_for_uploads=True)
    result["model_id"] = model.id
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset-id", default="", help="dataset version to train on")
    parser.add_argument("--eval-dataset-id", default="", help="fixed evaluation set")
    parser.add_argument("--project", default=PROJECT)
    args = parser.parse_args(argv)
    overrides = {}
    if args.dataset_id:
        overrides["CLEARML_DATASET_ID"] = args.dataset_id
    if args.eval_dataset_id:
        overrides["EVAL_DATASET_ID"] = args.eval_dataset_id
    run(overrides, project=args.project)


if __name__ == "__main__":
    main()
