"""The task the scheduler clones per dataset version: configured, found by tag, or registered once."""

from __future__ import annotations

import logging
import os
import re
import subprocess

from services.scheduler.api import ApiCallError, ClearmlApi
from services.scheduler.settings import ConfigError, SchedulerSettings

log = logging.getLogger("occupancy.scheduler")
EVAL_PARAMETER = "Args/eval_dataset_id"


def find_template(api: ClearmlApi, settings: SchedulerSettings) -> str | None:
    """The newest non-archived task tagged ``template_tag`` in ``project`` or its sub-projects."""
    pattern = f"^{re.escape(settings.project)}(/|$)"
    projects = api.call("projects.get_all", name=pattern, search_hidden=True, only_fields=["id"])["projects"]
    if not projects:
        return None
    found = api.call(
        "tasks.get_all",
        project=[p["id"] for p in projects],
        tags=[settings.template_tag],
        system_tags=["-archived"],
        search_hidden=True,
        order_by=["-created"],
        page=0,
        page_size=1,
        only_fields=["id"],
    )["tasks"]
    return str(found[0]["id"]) if found else None


def register_template(settings: SchedulerSettings, timeout: float = 600) -> str:
    """Store the retraining pipeline as a draft template (``python -m training.pipeline --register``)."""
    from training.pipeline import register_command

    cmd = register_command(
        settings.project, settings.steps_queue, settings.parameters.get(EVAL_PARAMETER, "")
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not re.fullmatch(r"[0-9a-f]{32}", lines[-1]):
        raise RuntimeError(
            f"registering the pipeline template failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return lines[-1]


def resolve_template(api: ClearmlApi, settings: SchedulerSettings) -> str:
    """The id of the task to clone; raises :class:`ConfigError` naming the setting that is wrong."""
    if settings.template_id:
        try:
            api.call("tasks.get_by_id", task=settings.template_id)
        except ApiCallError as exc:
            raise ConfigError(f"template_id: no task {settings.template_id} on {api.host} ({exc})") from exc
        return settings.template_id
    found = find_template(api, settings)
    if found:
        log.info("cloning template %s (tagged %s)", found, settings.template_tag)
        return found
    if not settings.register_template:
        raise ConfigError(
            f"template_tag: no task tagged {settings.template_tag!r} in project {settings.project!r}, and "
            "register_template is false: set template_id, tag a template, or allow registering one"
        )
    log.info(
        "no pipeline template in %s yet: registering one (steps on %s)",
        settings.project,
        settings.steps_queue,
    )
    template = register_template(settings)
    log.info("registered pipeline template %s", template)
    return template
