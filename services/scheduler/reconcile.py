"""One poll of the trigger scheduler: level-triggered reconciliation, the way Kubernetes controllers work.

Desired state: every finalized version of a dataset in the watched project that carries the
configured tags (by default ``Production``) has exactly one retraining run. Actual state: the runs
that carry the idempotency key ``retrain-of:<dataset version id>`` in ClearML itself. Each poll makes
the actual state match the desired one, with a constant number of queries (three, plus a few per
launch):

1. the dataset sub-projects ``<project>/.datasets/*`` (so a dataset created after start-up is seen);
2. the newest ``max_versions_per_poll`` tagged, finalized versions updated within ``lookback_hours``;
3. the runs holding the keys of those versions.

A version without a run is *claimed*: the template is cloned with the key as a tag (one atomic call),
then the runs with that key are read again. Of several runs with one key (two replicas claimed at the
same time, or a scheduler died between clone and enqueue), a run already launched (queued, running or
done) wins; among drafts only, the earliest created; every replica computes the same winner. Drafts
that lost are deleted; a winner still in draft is enqueued, by its own replica at once or by anyone
after ``claim_grace_seconds``; the server refuses to enqueue a task twice. Nothing lives only in
memory: restart, SIGKILL at any point or a second replica changes nothing, and versions finalized
while no scheduler ran are launched on the next poll.

Every step is a *stage* (``template``, ``list_projects``, ``list_versions``, ``list_runs``, ``claim``,
``enqueue``, ``delete``): any exception in it, of any type, is raised as :class:`StageError` naming the
stage. A failed read stage fails the poll; a failed step of one version leaves that version to the
next poll and goes on with the others.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from occupancy_mlops.clearml_api import LABELED_AT, ApiCallError, ClearmlApi, parse_time
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.settings import ConfigError, SchedulerSettings
from services.scheduler.template import TemplatePending, TemplateSource

log = logging.getLogger("occupancy.scheduler")

DRAFT = "created"
FINALIZED = ["completed", "published"]
KEY_PREFIX = "retrain-of:"
NOT_ENQUEUED_BY_ME = {(400, 706), (400, 110)}
"""tasks.enqueue of a task that is already queued (706) or has moved on from draft (110): launched."""


def idempotency_key(dataset_id: str) -> str:
    return f"{KEY_PREFIX}{dataset_id}"


class StageError(RuntimeError):
    """A step of a poll failed, whatever the exception; ``stage`` names the step (a metric label)."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        detail = str(cause) if isinstance(cause, ApiCallError) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"{stage}: {detail}")
        self.stage = stage
        self.cause = cause


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Raise any exception of the block as :class:`StageError` (configuration problems pass through:
    they stop the service)."""
    try:
        yield
    except (StageError, ConfigError, TemplatePending):
        raise
    except Exception as exc:
        if type(exc).__name__ == "MissingConfigError":  # the SDK's: no server configured at all
            raise
        raise StageError(name, exc) from exc


@dataclass(frozen=True)
class Version:
    """A finalized dataset version that should have a retraining run."""

    id: str
    name: str
    finalized: datetime | None
    updated: datetime | None = None
    """Its last change: when it got the trigger tag, if that came after the finalize (ClearML keeps
    no time per tag; any later edit moves it too)."""
    labeled: datetime | None = None
    """When its newest labels were written: the ``labeled_at`` user property the labeling tools set."""

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Version:
        updated = parse_time(doc.get("last_update"))
        finalized = parse_time(doc.get("completed")) or updated
        properties = (doc.get("hyperparams") or {}).get("properties") or {}
        item = properties.get(LABELED_AT) if isinstance(properties, dict) else None
        labeled = parse_time(item.get("value")) if isinstance(item, dict) else None
        return cls(doc["id"], doc.get("name", ""), finalized, updated, labeled)

    def eligible_since(self, watching_since: datetime) -> datetime:
        """When this scheduler could first have launched it: the latest of its finalize, its last
        change (the trigger tag) and the moment this scheduler started watching."""
        return max(t for t in (self.finalized, self.updated, watching_since) if t is not None)


@dataclass(frozen=True)
class Run:
    """A launched (or claimed) retraining run."""

    id: str
    status: str
    created: datetime | None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Run:
        return cls(id=doc["id"], status=str(doc.get("status", "")), created=parse_time(doc.get("created")))

    @property
    def order(self) -> tuple[datetime, str]:
        return (self.created or datetime.max.replace(tzinfo=UTC), self.id)


@dataclass
class Launch:
    dataset_id: str
    dataset_name: str
    run_id: str
    lag_seconds: float | None
    """Seconds from the moment the version became eligible (:meth:`Version.eligible_since`) to enqueue."""


@dataclass
class Planned:
    """What a poll would do for one version (``scheduler once --dry-run``)."""

    dataset_id: str
    dataset_name: str
    action: str
    """``clone and enqueue``, ``enqueue draft <id>`` (a draft past the grace period), ``wait for draft
    <id>`` (another scheduler's young draft), ``delete draft <id>`` (it lost its claim)."""


@dataclass
class PollResult:
    versions: int = 0
    launched: list[Launch] = field(default_factory=list)
    duplicates_removed: int = 0
    waiting: int = 0
    """Draft runs left by another scheduler, not yet older than the grace period."""
    errors: list[str] = field(default_factory=list)
    attempts: list[bool] = field(default_factory=list)
    """One per version the poll acted on, in order: True if it ended launched, False if a step failed."""
    pending: str | None = None
    """Set when the poll waited for another scheduler to register the template (nothing else done)."""


@dataclass
class Plan:
    template_id: str | None
    would_register_template: bool
    versions: int
    actions: list[Planned] = field(default_factory=list)


class Reconciler:
    """Runs polls against one ClearML server; holds no state between polls but the template id."""

    def __init__(
        self,
        api: ClearmlApi,
        settings: SchedulerSettings,
        template_id: str | None = None,
        metrics: SchedulerMetrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        templates: TemplateSource | None = None,
    ) -> None:
        """``template_id`` None: the first poll finds (or registers) it, see :class:`TemplateSource`."""
        self.api = api
        self.settings = settings
        self.template_id = template_id
        self.metrics = metrics or SchedulerMetrics()
        self.clock = clock
        self.watching_since = clock()
        self.templates = templates or TemplateSource(
            settings, clock=clock, on_registered=lambda _: self.metrics.template_registrations.inc()
        )

    # ------------------------------------------------------------------ queries
    def dataset_projects(self) -> list[str]:
        pattern = f"^{re.escape(self.settings.project)}/\\.datasets/"
        data = self.api.call("projects.get_all", name=pattern, search_hidden=True, only_fields=["id"])
        return [p["id"] for p in data.get("projects", [])]

    def tagged_versions(self, projects: list[str]) -> list[Version]:
        since = self.clock() - timedelta(hours=self.settings.lookback_hours)
        data = self.api.call(
            "tasks.get_all",
            project=projects,
            system_tags=["dataset", "-archived"],
            tags=["__$all", *self.settings.tags],
            status=FINALIZED,
            last_update=[f">{since.strftime('%Y-%m-%dT%H:%M:%S')}"],
            search_hidden=True,
            order_by=["-last_update"],
            page=0,
            page_size=self.settings.max_versions_per_poll,
            only_fields=["id", "name", "completed", "last_update", "hyperparams.properties"],
        )
        versions = [Version.from_doc(d) for d in data.get("tasks", [])]
        # launch in the order the versions were finalized
        return sorted(versions, key=lambda v: (v.finalized or datetime.min.replace(tzinfo=UTC), v.id))

    def runs_by_key(self, keys: list[str]) -> dict[str, list[Run]]:
        if not keys:
            return {}
        data = self.api.call(
            "tasks.get_all",
            tags=keys,
            search_hidden=True,
            only_fields=["id", "status", "created", "tags"],
        )
        wanted = set(keys)
        runs: dict[str, list[Run]] = {}
        for doc in data.get("tasks", []):
            for tag in doc.get("tags") or []:
                if tag in wanted:
                    runs.setdefault(tag, []).append(Run.from_doc(doc))
        return runs

    # ------------------------------------------------------------------ actions
    def _claim(self, version: Version) -> str:
        """Clone the template for ``version``, the idempotency key set in the same call."""
        template = self.api.call("tasks.get_by_id", task=self.template_id)["task"]
        hyperparams = template.get("hyperparams") or {}
        overrides = {self.settings.dataset_parameter: version.id, **self.settings.parameters}
        for path, value in overrides.items():
            section, name = path.split("/", 1)
            hyperparams.setdefault(section, {})[name] = {
                **hyperparams.get(section, {}).get(name, {}),
                "section": section,
                "name": name,
                "value": str(value),
            }
        tags = [t for t in template.get("tags") or [] if t != self.settings.template_tag]
        data = self.api.call(
            "tasks.clone",
            task=self.template_id,
            new_task_name=f"retrain on {version.name} {version.id[:8]}",
            new_task_tags=sorted({*tags, idempotency_key(version.id), f"dataset:{version.id}"}),
            new_task_system_tags=[t for t in template.get("system_tags") or [] if t != "archived"],
            new_task_hyperparams=hyperparams,
            new_task_comment=f"Launched by the trigger scheduler for dataset version {version.id}",
        )
        return str(data["id"])

    def _enqueue(self, run_id: str) -> bool:
        """True if this call queued it, False if it already was (another scheduler did)."""
        try:
            self.api.call(
                "tasks.enqueue",
                task=run_id,
                queue_name=self.settings.queue,
                status_reason="retrain of a new dataset version",
                status_message="occupancy trigger scheduler",
            )
        except ApiCallError as exc:
            if (exc.code, exc.subcode) in NOT_ENQUEUED_BY_ME:
                return False
            raise
        return True

    def _delete(self, run_id: str) -> bool:
        try:
            self.api.call("tasks.delete", task=run_id, force=True)
        except ApiCallError as exc:
            if exc.code == 400 and exc.subcode == 101:  # invalid task id: already deleted
                return False
            raise
        return True

    @staticmethod
    def winner(runs: list[Run]) -> Run:
        """The run a version keeps: one already launched (queued, running, done: it cannot be taken
        back), else the earliest-created draft."""
        launched = [r for r in runs if r.status != DRAFT]
        return min(launched or runs, key=lambda r: r.order)

    def _age(self, run: Run) -> float:
        return (self.clock() - run.created).total_seconds() if run.created else float("inf")

    def _settle(self, version: Version, runs: list[Run], mine: str | None, result: PollResult) -> None:
        """Make the runs of one version converge on one queued run."""
        winner = self.winner(runs)
        for loser in runs:
            if loser.id != winner.id and loser.status == DRAFT:
                with stage("delete"):
                    deleted = self._delete(loser.id)
                if deleted:
                    result.duplicates_removed += 1
                    self.metrics.duplicates_removed.inc()
                    log.info("removed duplicate draft %s of dataset version %s", loser.id, version.id)
        if winner.status != DRAFT:
            return
        if winner.id != mine and self._age(winner) < self.settings.claim_grace_seconds:
            result.waiting += 1
            return
        with stage("enqueue"):
            enqueued = self._enqueue(winner.id)
        if enqueued:
            eligible = version.eligible_since(self.watching_since)
            lag = max((self.clock() - eligible).total_seconds(), 0.0)
            result.launched.append(Launch(version.id, version.name, winner.id, lag))
            self.metrics.launches.inc()
            self.metrics.launch_lag.observe(lag)
            if version.labeled is not None and version.finalized is not None:
                labeling = (version.finalized - version.labeled).total_seconds()
                self.metrics.labeled_to_finalized.observe(max(labeling, 0.0))
            log.info(
                "launched %s for dataset %s version %s on queue %s (%.1f s after it became eligible)",
                winner.id,
                version.name,
                version.id,
                self.settings.queue,
                lag,
            )

    def _read(self) -> tuple[list[Version], dict[str, list[Run]]]:
        with stage("list_projects"):
            projects = self.dataset_projects()
        with stage("list_versions"):
            versions = self.tagged_versions(projects) if projects else []
        with stage("list_runs"):
            existing = self.runs_by_key([idempotency_key(v.id) for v in versions])
        return versions, existing

    def poll(self) -> PollResult:
        """One reconciliation pass. Raises :class:`StageError` if the server cannot be read (or the
        template cannot be found or registered), :class:`ConfigError` if the configuration is wrong."""
        result = PollResult()
        if self.template_id is None:
            try:
                with stage("template"):
                    self.template_id = self.templates.resolve(self.api)
            except TemplatePending as waiting:
                result.pending = str(waiting)
                return result
        versions, existing = self._read()
        result.versions = len(versions)
        for version in versions:
            key = idempotency_key(version.id)
            runs = existing.get(key, [])
            if runs and all(r.status != DRAFT for r in runs):
                continue  # the common case: launched before
            try:
                mine = None
                if not runs:
                    with stage("claim"):
                        mine = self._claim(version)
                    with stage("list_runs"):
                        runs = self.runs_by_key([key]).get(key, [])
                        if not any(r.id == mine for r in runs):
                            raise ApiCallError("tasks.get_all", 0, 0, f"the new run {mine} is not listed")
                launched = len(result.launched)
                self._settle(version, runs, mine, result)
                if len(result.launched) > launched:
                    result.attempts.append(True)
            except StageError as exc:
                # left for the next poll: the state in ClearML says what is still to do
                result.errors.append(f"dataset version {version.id}: {exc}")
                result.attempts.append(False)
                self.metrics.failures.labels(stage=exc.stage).inc()
                log.warning("could not launch a retrain of dataset version %s: %s", version.id, exc)
                if self._template_vanished(exc):
                    break
        self.metrics.waiting.set(result.waiting)
        return result

    def _template_vanished(self, exc: StageError) -> bool:
        """A template found by tag was deleted: find (or register) one again on the next poll."""
        cause = exc.cause
        gone = (
            exc.stage == "claim"
            and isinstance(cause, ApiCallError)
            and cause.endpoint == "tasks.get_by_id"
            and cause.code == 400
        )
        if gone and not self.settings.template_id:
            log.warning("the template %s is gone: looking for one again", self.template_id)
            self.template_id = None
            return True
        return False

    def plan(self) -> Plan:
        """What :meth:`poll` would do now, doing nothing (no registration, no clone, no enqueue)."""
        template = self.template_id
        if template is None:
            with stage("template"):
                template = self.templates.find(self.api)
        versions, existing = self._read()
        plan = Plan(template, template is None, len(versions))
        for version in versions:
            runs = existing.get(idempotency_key(version.id), [])
            if runs and all(r.status != DRAFT for r in runs):
                continue
            todo = []
            if not runs:
                todo.append("clone and enqueue")
            else:
                winner = self.winner(runs)
                todo += [f"delete draft {r.id}" for r in runs if r.id != winner.id and r.status == DRAFT]
                if winner.status == DRAFT:
                    young = self._age(winner) < self.settings.claim_grace_seconds
                    todo.append(f"{'wait for' if young else 'enqueue'} draft {winner.id}")
            plan.actions += [Planned(version.id, version.name, action) for action in todo]
        return plan
