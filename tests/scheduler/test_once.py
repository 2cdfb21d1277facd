"""``scheduler once`` does what its help says (one poll: it launches), and ``--dry-run`` prints what
that poll would do and changes nothing on the server."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

from typer.testing import CliRunner

from occupancy_mlops.local_stack import scheduler_env
from services.scheduler.cli import scheduler_app
from services.scheduler.settings import load_settings
from services.scheduler.template import lock_name
from tests.scheduler.conftest import api_for, create_template, finish, launched_runs, make_versions


def _once(env, settings, *args) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "services.scheduler", "once", *args],
        env={**env, **scheduler_env(settings)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, (json.loads(lines[-1]) if lines else {}), proc.stderr


def test_dry_run_prints_what_once_would_launch_and_once_launches_it(clearml_env):
    project = f"Once-{uuid.uuid4().hex[:6]}"
    template = create_template(clearml_env, project)
    versions = finish(
        make_versions(
            clearml_env,
            project,
            [{"name": "a", "tags": ["Production"]}, {"name": "b", "tags": ["Production"]}, {"name": "c"}],
        )
    )
    settings = {
        "project": project,
        "template_id": template,
        "queue": f"q-{uuid.uuid4().hex[:6]}",
        "dataset_parameter": "General/CLEARML_DATASET_ID",
    }
    code, plan, err = _once(clearml_env, settings, "--dry-run")
    assert code == 0, err
    assert plan["dry_run"] is True and plan["template_id"] == template
    wanted = {v["id"] for v in versions[:2]}
    assert {a["dataset_id"] for a in plan["actions"]} == wanted
    assert {a["action"] for a in plan["actions"]} == {"clone and enqueue"}
    assert launched_runs(clearml_env, template) == {}, "a dry run launches nothing"

    code, did, err = _once(clearml_env, settings)
    assert code == 0, err
    assert {x["dataset_id"] for x in did["launched"]} == wanted
    assert set(launched_runs(clearml_env, template)) == wanted

    code, plan, err = _once(clearml_env, settings, "--dry-run")
    assert (code, plan["actions"]) == (0, []), err


def test_a_dry_run_on_a_fresh_project_registers_nothing(clearml_env):
    project = f"Fresh-{uuid.uuid4().hex[:6]}"
    [version] = finish(make_versions(clearml_env, project, [{"name": "a", "tags": ["Production"]}]))
    code, plan, err = _once(clearml_env, {"project": project}, "--dry-run")
    assert code == 0, err
    assert (plan["template_id"], plan["would_register_template"]) == (None, True)
    assert [(a["dataset_id"], a["action"]) for a in plan["actions"]] == [(version["id"], "clone and enqueue")]
    api = api_for(clearml_env)
    projects = api.call("projects.get_all", name=f"^{project}(/|$)", search_hidden=True)["projects"]
    tasks = api.call(
        "tasks.get_all", project=[p["id"] for p in projects], tags=["retrain-template"], search_hidden=True
    )
    assert tasks["tasks"] == [], "no template registered"
    lock = lock_name(load_settings(environ={}, project=project))
    assert lock not in {p["name"] for p in projects}, "no registration lock taken"


def test_the_help_of_once_says_that_it_launches():
    text = " ".join(CliRunner().invoke(scheduler_app, ["once", "--help"]).output.split())
    assert "it launches the retrains that are due" in text
    assert "--dry-run" in text and "what run would do" not in text.replace("`", "")
