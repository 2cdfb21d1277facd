"""The task the scheduler clones per dataset version: configured, found by tag, or registered once.

Registering runs ``training.pipeline.register`` in a child process (it creates that process's ClearML
task) with the SDK's exit-hang workaround, killed after ``register_timeout_seconds`` and retried on
the next poll; it happens inside a poll, so ``/healthz`` answers meanwhile. Replicas that start
together register one template: the registration holds a lock, a hidden project
``<project>/.scheduler-locks/<template_tag>`` (project names are unique on the server, so creating it
is atomic); the others wait for the holder's template, and a lock older than twice the timeout (its
holder died) is taken over.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from occupancy_mlops.clearml_api import ApiCallError, ClearmlApi, parse_time
from services.scheduler.settings import ConfigError, SchedulerSettings
from services.settings_loader import one_line

log = logging.getLogger("occupancy.scheduler")
EVAL_PARAMETER = "Args/eval_dataset_id"
LOCKS = ".scheduler-locks"
TEMPLATE_ID = re.compile(r"[0-9a-f]{32}")
REGISTER = """
import sys

from training.pipeline import register, report_from_a_thread

report_from_a_thread()  # the SDK's exit-hang workaround, whatever the clearml.conf says
print(register(sys.argv[1], sys.argv[2], sys.argv[3]), flush=True)
"""


class TemplatePending(Exception):
    """Another scheduler is registering the template: wait for it (not a failure)."""


class RegistrationError(RuntimeError):
    """Registering the template failed or took too long; the next poll tries again."""


def lock_name(settings: SchedulerSettings) -> str:
    return f"{settings.project}/{LOCKS}/{settings.template_tag}"


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


def register_command(settings: SchedulerSettings) -> list[str]:
    """``python -c REGISTER project steps_queue eval_dataset_id``."""
    eval_id = settings.parameters.get(EVAL_PARAMETER, "")
    return [sys.executable, "-c", REGISTER, settings.project, settings.steps_queue, eval_id]


def run_registration(command: list[str], timeout: float, stop: threading.Event) -> str:
    """Run ``command`` (it prints the template id last), killing its process group after ``timeout``
    seconds or when ``stop`` is set."""
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if stop.is_set():
                    raise RegistrationError("stopped while registering the pipeline template") from None
                if time.monotonic() > deadline:
                    raise RegistrationError(
                        f"registering the pipeline template took longer than {timeout:g} s "
                        "(register_timeout_seconds): killed, retried on the next poll"
                    ) from None
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the SDK's own children too
            proc.wait()
    lines = out.strip().splitlines()
    if proc.returncode != 0 or not lines or not TEMPLATE_ID.fullmatch(lines[-1].strip()):
        raise RegistrationError(
            f"registering the pipeline template failed (exit {proc.returncode}): {one_line(err)[-500:]}"
        )
    return lines[-1].strip()


class TemplateSource:
    """Finds, or registers once across replicas, the task a scheduler clones."""

    def __init__(
        self,
        settings: SchedulerSettings,
        *,
        command: list[str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_registered: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.settings = settings
        self.command = command or register_command(settings)
        self.clock = clock
        self.on_registered = on_registered
        self.stop_event = threading.Event()
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.status = "not looked up yet"
        """What the last lookup found, for ``/readyz``: found, registering, waiting, failed."""

    def check_configured(self, api: ClearmlApi) -> str:
        """``template_id`` names a task on the server (else :class:`ConfigError`)."""
        template_id = self.settings.template_id
        try:
            api.call("tasks.get_by_id", task=template_id)
        except ApiCallError as exc:
            if exc.code == 400:  # the server answered: no such task
                raise ConfigError(f"template_id: no task {template_id} on {api.host} ({exc})") from exc
            raise
        return template_id

    def find(self, api: ClearmlApi) -> str | None:
        """The template if it exists (nothing is registered); :class:`ConfigError` if it never will."""
        if self.settings.template_id:
            return self.check_configured(api)
        found = find_template(api, self.settings)
        if not found and not self.settings.register_template:
            raise ConfigError(
                f"template_tag: no task tagged {self.settings.template_tag!r} in project "
                f"{self.settings.project!r}, and register_template is false: set template_id, tag a "
                "template, or allow registering one"
            )
        return found

    def resolve(self, api: ClearmlApi) -> str:
        """The template id, registering it if there is none. Raises :class:`TemplatePending` while
        another scheduler registers it, :class:`ConfigError` if it cannot exist."""
        self.status = "looking up the template"
        found = self.find(api)
        if found:
            log.info("cloning template %s", found)
            self.status = f"found {found}"
            return found
        try:
            lock = self._acquire(api)
        except TemplatePending as waiting:
            self.status = str(waiting)
            raise
        try:
            found = find_template(api, self.settings)  # its holder finished between our look and our lock
            if found:
                self.status = f"found {found}"
                return found
            log.info(
                "no pipeline template in %s yet: registering one (steps on %s)",
                self.settings.project,
                self.settings.steps_queue,
            )
            since = self.clock().isoformat(timespec="seconds")
            self.status = f"registering the pipeline template since {since}"
            started = time.monotonic()
            try:
                template = run_registration(
                    self.command, self.settings.register_timeout_seconds, self.stop_event
                )
            except RegistrationError as exc:
                self.status = str(exc)
                raise
            log.info("registered pipeline template %s in %.1f s", template, time.monotonic() - started)
            self.status = f"registered {template}"
            self.on_registered(template)
            return template
        finally:
            self._release(api, lock)

    def _acquire(self, api: ClearmlApi, retry: bool = True) -> str:
        name = lock_name(self.settings)
        try:
            created = api.call(
                "projects.create",
                name=name,
                system_tags=["hidden"],
                description=f"{self.holder} is registering the pipeline template",
            )
            return str(created["id"])
        except ApiCallError as exc:
            if exc.code != 400:
                raise
            refused = exc
        held = api.call(
            "projects.get_all",
            name=f"^{re.escape(name)}$",
            search_hidden=True,
            only_fields=["id", "created", "description"],
        )["projects"]
        if not held:
            if retry:  # released meanwhile
                return self._acquire(api, retry=False)
            raise refused
        lock = held[0]
        since = parse_time(lock.get("created"))
        age = (self.clock() - since).total_seconds() if since else math.inf
        if age > 2 * self.settings.register_timeout_seconds and retry:
            log.warning("taking over the template registration lock %s (%.0f s old)", lock["id"], age)
            self._release(api, str(lock["id"]))
            return self._acquire(api, retry=False)
        raise TemplatePending(
            f"waiting for another scheduler to register the pipeline template "
            f"({lock.get('description') or name}, {age:.0f} s ago)"
        )

    def _release(self, api: ClearmlApi, lock_id: str) -> None:
        try:
            api.call("projects.delete", project=lock_id, force=True)
        except ApiCallError as exc:  # gone already (taken over), or the server is away: it goes stale
            log.warning("could not release the template registration lock %s: %s", lock_id, exc)
