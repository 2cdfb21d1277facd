"""The retraining pipeline: preprocess → train → evaluate (gate, publish), as a ClearML
``PipelineController`` whose dataset id is a parameter, so the scheduler can clone it and run it on
a new dataset version (``Args/dataset_id``), locally or through agents on a queue.

Each step is a function that ClearML turns into its own task; the functions import the project's
modules (installed in the agents' interpreter) and hand data on as artifacts.
"""

# no ``from __future__ import annotations`` here: ClearML copies this module's imports into every
# step's generated script, below its own lines, where a __future__ import is a syntax error.
import argparse
import json
import os
from typing import Any

PIPELINE_NAME = "occupancy retraining"
PROJECT = "Occupancy"
TEMPLATE_TAG = "retrain-template"
"""Tag of the draft controller task that the trigger scheduler clones once per dataset version."""
ENTRY_POINT = "-m training.pipeline"
"""What an agent runs for a cloned controller (the project is installed in the agent's interpreter)."""


def preprocess_step(dataset_id: str, eval_dataset_id: str) -> tuple[Any, Any]:
    """Fetch and validate the dataset version and the evaluation set (a bad file fails the run here)."""
    from training.data import DataValidationError
    from training.task import dataset_frame

    if not dataset_id:
        raise ValueError("the pipeline parameter dataset_id is empty")
    try:
        frame = dataset_frame(dataset_id)
        eval_frame = dataset_frame(eval_dataset_id) if eval_dataset_id else None
    except DataValidationError as exc:  # one readable failure reason, not a traceback to decode
        raise SystemExit(
            f"error: a dataset version breaks the data contract (docs/training.md): {exc}"
        ) from None
    print(f"dataset {dataset_id}: {len(frame):,} valid rows")
    return frame, eval_frame


def train_step(frame: Any, eval_frame: Any, dataset_id: str, eval_dataset_id: str, overrides: str) -> str:
    """Train in this step's task and register the output model; returns the model id."""
    from clearml import Task

    from training.config import TrainingConfig, default_config
    from training.task import train_and_register

    task: Any = Task.current_task()
    config = default_config()
    config.update(json.loads(overrides or "{}"))
    config.update(CLEARML_DATASET_ID=dataset_id, EVAL_DATASET_ID=eval_dataset_id)
    task.connect(config, name="General")
    result = train_and_register(task, TrainingConfig.from_mapping(config), frame, eval_frame)
    return str(result["model_id"])


def evaluate_step(model_id: str, eval_frame: Any, overrides: str, project: str) -> dict[str, Any]:
    """Score the challenger and the recent champions on each window of the evaluation set (``EVAL_WINDOW``);
    submit to the registry or reject (``DEPLOY_MODE`` "direct" in ``overrides``: a passing challenger
    becomes the champion at once)."""
    from training.config import TrainingConfig
    from training.evaluate import GatePolicy
    from training.gate import gate
    from training.registry import ModelRegistry

    if eval_frame is None:
        raise ValueError("the gate needs an evaluation set: set the pipeline parameter eval_dataset_id")
    cfg = TrainingConfig.from_mapping(json.loads(overrides or "{}"))
    decision = gate(
        model_id,
        eval_frame,
        GatePolicy(
            cfg.GATE_FLOOR,
            cfg.GATE_TOLERANCE,
            cfg.EVAL_WINDOW,
            cfg.EVAL_WINDOW_MIN_ROWS,
            cfg.GATE_RECENT_CHAMPIONS,
        ),
        project,
        cfg.MODEL_NAME,
        cfg.DEPLOY_MODE,
    )
    state = ModelRegistry(project, cfg.MODEL_NAME).read()
    verdict = {
        "model_id": model_id,
        "published": decision.publish,
        "reason": decision.reason,
        "accuracy": decision.challenger.accuracy,
        "windows": [v.as_dict() for v in decision.windows],
        "state": state.state_of(model_id),
        "version": state.version_of(model_id),
    }
    print(json.dumps(verdict))
    return verdict


STEP_POLL_MINUTES = 0.02
"""How often the controller looks at its steps (minutes): 1.2 s. The SDK's default, 0.2 (12 s), put
up to 12 s of idle time after each of the three steps into every retrain."""


def build(
    project: str = PROJECT,
    queue: str | None = None,
    dataset_id: str = "",
    eval_dataset_id: str = "",
    overrides: dict[str, Any] | None = None,
) -> Any:
    """The pipeline definition; ``queue`` is where its steps run (None: wherever ``start`` says);
    ``overrides`` are training settings (training/config.py), e.g. ``{"DEPLOY_MODE": "direct"}``."""
    from clearml import PipelineController

    pipe = PipelineController(
        name=PIPELINE_NAME,
        project=project,
        version="1.0.0",
        add_pipeline_tags=True,
        pool_frequency=STEP_POLL_MINUTES,
    )
    pipe.add_parameter("dataset_id", dataset_id, "dataset version to train on")
    pipe.add_parameter("eval_dataset_id", eval_dataset_id, "the fixed evaluation set of the gate")
    pipe.add_parameter(
        "overrides", json.dumps(overrides or {}), "JSON object of training settings (training/config.py)"
    )
    pipe.add_parameter("project", project, "project whose published champion the gate compares with")
    if queue:
        pipe.set_default_execution_queue(queue)
    pipe.add_function_step(
        "preprocess",
        preprocess_step,
        function_kwargs={
            "dataset_id": "${pipeline.dataset_id}",
            "eval_dataset_id": "${pipeline.eval_dataset_id}",
        },
        function_return=["frame", "eval_frame"],
        cache_executed_step=False,
    )
    pipe.add_function_step(
        "train",
        train_step,
        parents=["preprocess"],
        function_kwargs={
            "frame": "${preprocess.frame}",
            "eval_frame": "${preprocess.eval_frame}",
            "dataset_id": "${pipeline.dataset_id}",
            "eval_dataset_id": "${pipeline.eval_dataset_id}",
            "overrides": "${pipeline.overrides}",
        },
        function_return=["model_id"],
        cache_executed_step=False,
    )
    pipe.add_function_step(
        "evaluate",
        evaluate_step,
        parents=["train"],
        function_kwargs={
            "model_id": "${train.model_id}",
            "eval_frame": "${preprocess.eval_frame}",
            "overrides": "${pipeline.overrides}",
            "project": "${pipeline.project}",
        },
        function_return=["verdict"],
        cache_executed_step=False,
    )
    return pipe


def run(
    dataset_id: str,
    eval_dataset_id: str,
    project: str = PROJECT,
    queue: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> str:
    """Run one retraining: the controller here, the steps here (no queue) or on ``queue`` via agents."""
    pipe = build(project, queue, dataset_id, eval_dataset_id, overrides)
    pipe.start_locally(run_pipeline_steps_locally=queue is None)
    from clearml import Task

    status = str(Task.get_task(task_id=pipe.id).get_status())
    if status != "completed":
        raise RuntimeError(f"pipeline {pipe.id} ended {status}: see its steps' logs")
    return str(pipe.id)


def report_from_a_thread() -> None:
    """The SDK's forked reporting subprocess sometimes hangs a process at exit after all its work
    succeeded (and ``Task.close`` waits about 10 s for it): report from a thread, as
    ``sdk.development.report_use_subprocess: false`` does, whatever the clearml.conf says."""
    import clearml
    from clearml.backend_interface.task.task import Task as BackendTask

    BackendTask._report_subprocess_enabled = False  # type: ignore[assignment]
    clearml.Task._report_subprocess_enabled = False  # type: ignore[assignment]


def register(project: str, queue: str, eval_dataset_id: str = "") -> str:
    """Store the pipeline as a draft controller task (the template) whose steps run on ``queue``.

    Clone it, set ``Args/dataset_id`` and enqueue the clone on a controller queue: an agent there runs
    ``python -m training.pipeline``, which drives the steps through agents on ``queue``.
    Call it in a process of its own (it creates the process's ClearML task); returns the template id.
    """
    from occupancy_mlops.clearml_api import ClearmlApi

    pipe = build(project, queue, "", eval_dataset_id)
    pipe.create_draft()
    template_id = str(pipe.id)
    api = ClearmlApi()
    task = api.call("tasks.get_by_id", task=template_id)["task"]
    api.call(
        "tasks.edit",
        task=template_id,
        force=True,
        tags=sorted({*(task.get("tags") or []), TEMPLATE_TAG}),
        script={
            "entry_point": ENTRY_POINT,
            "working_dir": ".",
            "repository": "",
            "diff": "",
            "binary": "python3",
        },
    )
    return template_id


def register_command(project: str, queue: str, eval_dataset_id: str = "") -> list[str]:
    """The command that runs :func:`register` in a process of its own (it creates that process's task)."""
    import sys

    cmd = [sys.executable, "-m", "training.pipeline", "--register", "--project", project, "--queue", queue]
    return cmd + (["--eval-dataset-id", eval_dataset_id] if eval_dataset_id else [])


def run_as_agent_task() -> None:
    """The controller's body when an agent runs a cloned template: parameters come from the task."""
    pipe = build()
    pipe.start()  # under an agent: runs the DAG here, steps go to the template's queue


def main(argv: list[str] | None = None) -> None:
    if argv is None and os.environ.get("CLEARML_TASK_ID"):
        run_as_agent_task()  # an agent executes a cloned template
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset-id", default="")
    parser.add_argument("--eval-dataset-id", default="")
    parser.add_argument("--project", default=PROJECT)
    parser.add_argument("--queue", default=None, help="run the steps through agents on this queue")
    parser.add_argument(
        "--deploy-mode",
        choices=["canary", "direct"],
        default=None,
        help="canary (default): a passing model waits for the canary controller; direct: it becomes "
        "the champion at once",
    )
    parser.add_argument(
        "--register",
        action="store_true",
        help="store the pipeline as a draft template for the scheduler (steps on --queue) and print its id",
    )
    args = parser.parse_args(argv)
    if args.register:
        if not args.queue:
            parser.error("--register needs --queue: where the steps of a launched pipeline run")
        report_from_a_thread()
        print(register(args.project, args.queue, args.eval_dataset_id), flush=True)
        return
    if not args.dataset_id or not args.eval_dataset_id:
        parser.error("--dataset-id and --eval-dataset-id are required to run the pipeline")
    overrides = {"DEPLOY_MODE": args.deploy_mode} if args.deploy_mode else None
    print(run(args.dataset_id, args.eval_dataset_id, args.project, args.queue, overrides))


if __name__ == "__main__":
    main()
