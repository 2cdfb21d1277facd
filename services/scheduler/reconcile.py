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
same time, or a scheduler died between clone and enqueue), the earliest created wins; every replica
computes the same winner. Drafts that lost are deleted; a winner still in draft is enqueued, by its
own replica at once or by anyone after ``claim_grace_seconds``; the server refuses to enqueue a task
twice. Nothing lives only in memory: restart, SIGKILL at any point or a second replica changes nothing,
and versions finalized while no scheduler ran are launched on the next poll.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.scheduler.api import ApiCallError, ClearmlApi
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.settings import SchedulerSettings

log = logging.getLogger("occupancy.scheduler")

DRAFT = "created"
FINALIZED = ["completed", "published"]
KEY_PREFIX = "retrain-of:"
NOT_ENQUEUED_BY_ME = {(400, 706), (400, 110)}
"""tasks.enqueue of a task that is already queued (706) or has moved on from draft (110): launched."""


def idempotency_key(dataset_id: str) -> str:
    return f"{KEY_PREFIX}{dataset_id}"


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Version:
    """A finalized dataset version that should have a retraining run."""

    id: str
    name: str
    finalized: datetime | None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Version:
        finalized = parse_time(doc.get("completed")) or parse_time(doc.get("last_update"))
        return cls(id=doc["id"], name=doc.get("name", ""), finalized=finalized)


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


@dataclass
class PollResult:
    versions: int = 0
    launched: list[Launch] = field(default_factory=list)
    duplicates_removed: int = 0
    waiting: int = 0
    """Draft runs left by another scheduler, not yet older than the grace period."""
    errors: list[str] = field(default_factory=list)


class Reconciler:
    """Runs polls against one ClearML server; holds no state between polls but the template id."""

    def __init__(
        self,
        api: ClearmlApi,
        settings: SchedulerSettings,
        template_id: str,
        metrics: SchedulerMetrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = api
        self.settings = settings
        self.template_id = template_id
        self.metrics = metrics or SchedulerMetrics()
        self.clock = clock

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
            only_fields=["id", "name", "completed", "last_update"],
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

    def _settle(self, version: Version, runs: list[Run], mine: str | None, result: PollResult) -> None:
        """Make the runs of one version converge on one queued run."""
        winner = min(runs, key=lambda r: r.order)
        for loser in runs:
            if loser.id != winner.id and loser.status == DRAFT and self._delete(loser.id):
                result.duplicates_removed += 1
                self.metrics.duplicates_removed.inc()
                log.info("removed duplicate draft %s of dataset version %s", loser.id, version.id)
        if winner.status != DRAFT:
            return
        age = (self.clock() - winner.created).total_seconds() if winner.created else float("inf")
        if winner.id != mine and age < self.settings.claim_grace_seconds:
            result.waiting += 1
            return
        if self._enqueue(winner.id):
            lag = (self.clock() - version.finalized).total_seconds() if version.finalized else None
            result.launched.append(Launch(version.id, version.name, winner.id, lag))
            self.metrics.launches.inc()
            if lag is not None:
                self.metrics.launch_lag.observe(max(lag, 0.0))
            log.info(
                "launched %s for dataset %s version %s on queue %s%s",
                winner.id,
                version.name,
                version.id,
                self.settings.queue,
                f" ({lag:.1f} s after finalize)" if lag is not None else "",
            )

    def poll(self) -> PollResult:
        """One reconciliation pass. Raises :class:`ApiCallError` if the server cannot be read."""
        result = PollResult()
        projects = self.dataset_projects()
        versions = self.tagged_versions(projects) if projects else []
        result.versions = len(versions)
        existing = self.runs_by_key([idempotency_key(v.id) for v in versions])
        for version in versions:
            key = idempotency_key(version.id)
            runs = existing.get(key, [])
            if runs and all(r.status != DRAFT for r in runs):
                continue  # the common case: launched before
            try:
                mine = None
                if not runs:
                    mine = self._claim(version)
                    runs = self.runs_by_key([key]).get(key, [])
                    if not any(r.id == mine for r in runs):
                        raise ApiCallError("tasks.get_all", 0, 0, f"the new run {mine} is not listed")
                self._settle(version, runs, mine, result)
            except ApiCallError as exc:
                # left for the next poll: the state in ClearML says what is still to do
                result.errors.append(f"dataset version {version.id}: {exc}")
                self.metrics.failures.labels(stage=exc.endpoint).inc()
                log.warning("could not launch a retrain of dataset version %s: %s", version.id, exc)
        self.metrics.waiting.set(result.waiting)
        return result
