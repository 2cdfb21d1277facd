"""The model registry: the ONE owner of the states of the occupancy models.

States of a model: ``candidate`` → ``canary`` → ``champion`` → ``former-champion``; or ``rejected`` (by
the gate) / ``rolled-back`` (a candidate or canary stopped by the canary controller or a person).

Source of truth: an append-only event log in ClearML. Every transition is ONE ``tasks.create`` of a small
draft task in the hidden project ``<project>/.registry`` (system tags ``registry-event``, ``hidden``),
named ``registry <model_name> gen-<000012>``, tagged ``registry-gen:<model_name>:12``, whose comment
holds the FULL resulting state as JSON. One call creates a whole event or none: a crash cannot leave
half an event.

Compare-and-set: a writer reads generation N, computes the new state, creates its claim for N+1 and
reads the claims of N+1 back. The earliest created (then the smallest id) wins; every process computes
the same winner from the same claims. A loser deletes its claim and starts again from the new state,
where its transition decides again (it may now be a no-op, or refused). THE state is the winner of the
highest generation.

Model tags (``champion``, ``canary``, ...) and metadata (``registry_state``, ``registry_version``,
``registry_reason``) are only a projection of the state, re-applied idempotently by :meth:`sync_tags`
at the start and the end of every transition: a process killed between its event and its tags leaves
tags that the next transition (or a plain ``sync_tags()``) repairs. Ask :meth:`ModelRegistry.read`,
not the tags, who the champion is.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from occupancy_mlops.clearml_api import ApiCallError, ClearmlApi

log = logging.getLogger("occupancy.registry")

CANDIDATE = "candidate"
CANARY = "canary"
CHAMPION = "champion"
FORMER = "former-champion"
REJECTED = "rejected"
ROLLED_BACK = "rolled-back"
STATES = (CANDIDATE, CANARY, CHAMPION, FORMER, REJECTED, ROLLED_BACK)
"""Every state name; each is also the model tag that projects it."""
PUBLISHED_STATES = (CANDIDATE, CANARY, CHAMPION, FORMER)
"""States whose model is published (``ready``)."""

REGISTRY_SUBPROJECT = ".registry"
EVENT_SYSTEM_TAG = "registry-event"
HIDDEN = "hidden"
TASK_TYPE = "custom"
PAGE = 20
"""Claims read per query when looking for the newest generation."""
ALREADY_GONE = {(400, 101)}
"""tasks.delete of a claim that someone else deleted already (invalid task id)."""
ALREADY_READY = {(400, 203)}
"""models.set_ready of a model that is published already (another process published it meanwhile)."""


class RegistryError(RuntimeError):
    """The registry could not be read or written (server error, or too much contention)."""


class TransitionRefused(ValueError):
    """A transition that the current state does not allow, e.g. promoting a model that is not the canary."""


@dataclass
class CanaryState:
    model_id: str
    step: int
    """Index into the controller's weight steps."""
    weight: float
    """Traffic share now, 0..1."""
    started_at: float
    """Unix time the canary was deployed."""
    step_started_at: float
    passes: int = 0
    """Consecutive passing analyses at this step."""
    failures: int = 0
    """Failed analyses at this step (rollback at the threshold)."""
    paused: bool = False
    last_reason: str = ""


CANARY_FIELDS = {f.name for f in fields(CanaryState)} - {"model_id", "started_at"}
"""What :meth:`ModelRegistry.update_canary` may change."""


@dataclass
class RegistryState:
    generation: int = 0
    champion: str | None = None
    """Model id; exactly one at any moment once the first model was submitted."""
    canary: CanaryState | None = None
    candidates: list[str] = field(default_factory=list)
    """Published by the gate, waiting, oldest first."""
    former: list[str] = field(default_factory=list)
    """Former champions, newest first (rollback targets)."""
    versions: dict[str, int] = field(default_factory=dict)
    """Model id -> version number 1, 2, ... (assigned on submit)."""
    states: dict[str, str] = field(default_factory=dict)
    """Model id -> state name, for every model the registry has seen."""
    reasons: dict[str, str] = field(default_factory=dict)
    """Model id -> the reason of its last transition."""
    updated_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | dict[str, Any]) -> RegistryState:
        data = json.loads(text) if isinstance(text, str) else dict(text)
        canary = data.get("canary")
        return cls(
            generation=int(data.get("generation", 0)),
            champion=data.get("champion"),
            canary=CanaryState(**canary) if canary else None,
            candidates=list(data.get("candidates") or []),
            former=list(data.get("former") or []),
            versions={str(k): int(v) for k, v in (data.get("versions") or {}).items()},
            states={str(k): str(v) for k, v in (data.get("states") or {}).items()},
            reasons={str(k): str(v) for k, v in (data.get("reasons") or {}).items()},
            updated_at=float(data.get("updated_at", 0.0)),
        )

    def copy(self) -> RegistryState:
        return RegistryState.from_json(self.to_json())

    def state_of(self, model_id: str) -> str | None:
        return self.states.get(model_id)

    def version_of(self, model_id: str | None) -> int | None:
        return self.versions.get(model_id) if model_id else None

    def problems(self) -> list[str]:
        """Broken invariants (none in every stored state)."""
        out = []
        champions = sorted(m for m, s in self.states.items() if s == CHAMPION)
        if champions != ([self.champion] if self.champion else []):
            out.append(f"champion {self.champion} but models in state champion: {champions}")
        canaries = sorted(m for m, s in self.states.items() if s == CANARY)
        if canaries != ([self.canary.model_id] if self.canary else []):
            out.append(f"canary {self.canary} but models in state canary: {canaries}")
        if sorted(self.candidates) != sorted(m for m, s in self.states.items() if s == CANDIDATE):
            out.append(f"candidates {self.candidates} disagree with the states")
        if sorted(self.former) != sorted(m for m, s in self.states.items() if s == FORMER):
            out.append(f"former champions {self.former} disagree with the states")
        unversioned = [m for m, s in self.states.items() if s in PUBLISHED_STATES and m not in self.versions]
        if unversioned:
            out.append(f"published models without a version: {unversioned}")
        if len(set(self.versions.values())) != len(self.versions):
            out.append(f"version numbers repeat: {self.versions}")
        return out


@dataclass(frozen=True)
class Claim:
    """One event of the log: a claim for a generation, the state it would make current."""

    id: str
    generation: int
    created: str
    comment: str

    @property
    def order(self) -> tuple[datetime, str]:
        return (_parse_time(self.created), self.id)

    def state(self) -> RegistryState:
        payload = json.loads(self.comment)
        return RegistryState.from_json(payload["state"])


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.max.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class ModelRegistry:
    """The states of the models named ``model_name`` in ``project``, kept in ClearML.

    ``api`` defaults to the SDK's own authenticated session (credentials from the environment or
    clearml.conf). ``max_attempts`` bounds the CAS loop; ``settle_seconds`` waits that long between
    creating a claim and reading the claims back (0 is exact on a server that assigns ``created`` and
    stores a task in one step, as the local server does; a multi-process API server may want ~0.2 s).
    """

    def __init__(
        self,
        project: str,
        model_name: str = "occupancy-mlp",
        *,
        api: ClearmlApi | None = None,
        max_attempts: int = 30,
        settle_seconds: float = 0.0,
    ) -> None:
        self.project = project
        self.model_name = model_name
        self.api = api or ClearmlApi()
        self.max_attempts = max_attempts
        self.settle_seconds = settle_seconds
        self._project_id: str | None = None
        self.writer = f"{socket.gethostname()}:{os.getpid()}"
        self.lost_claims = 0
        """Claims this instance lost to a concurrent writer (each one retried)."""

    # ------------------------------------------------------------------ event log
    @property
    def registry_project(self) -> str:
        return f"{self.project}/{REGISTRY_SUBPROJECT}"

    def event_name(self, generation: int) -> str:
        return f"registry {self.model_name} gen-{generation:06d}"

    def generation_tag(self, generation: int) -> str:
        return f"registry-gen:{self.model_name}:{generation}"

    def _registry_project_id(self, create: bool) -> str | None:
        if self._project_id:
            return self._project_id
        name = self.registry_project
        for _ in range(3):
            found = self.api.call(
                "projects.get_all", name=f"^{re.escape(name)}$", search_hidden=True, only_fields=["id"]
            )["projects"]
            if found:
                self._project_id = str(found[0]["id"])
                return self._project_id
            if not create:
                return None
            try:
                data = self.api.call(
                    "projects.create",
                    name=name,
                    description=f"event log of the model registry of {self.project}",
                    system_tags=[HIDDEN],
                )
                self._project_id = str(data["id"])
                return self._project_id
            except ApiCallError as exc:
                log.info("creating %s: %s (another process created it?)", name, exc)
        raise RegistryError(f"could not find or create the project {name}")

    def _claims(self, generation: int | None = None) -> list[Claim]:
        """The claims of ``generation``, or of the newest generation when None."""
        project_id = self._registry_project_id(create=False)
        if project_id is None:
            return []
        query: dict[str, Any] = {
            "project": [project_id],
            "system_tags": [EVENT_SYSTEM_TAG],
            "search_hidden": True,
            "only_fields": ["id", "name", "created", "comment", "tags"],
        }
        if generation is None:
            query.update(
                name=f"^{re.escape(f'registry {self.model_name} gen-')}",
                order_by=["-name", "created"],
                page=0,
                page_size=PAGE,
            )
        else:
            query["tags"] = [self.generation_tag(generation)]
        docs = self.api.call("tasks.get_all", **query)["tasks"]
        claims = [c for c in (self._claim_of(d) for d in docs) if c is not None]
        if generation is None and claims:
            newest = max(c.generation for c in claims)
            if len(docs) < PAGE:
                return [c for c in claims if c.generation == newest]
            return self._claims(newest)  # a full page: ask for exactly that generation
        return [c for c in claims if generation is None or c.generation == generation]

    def _claim_of(self, doc: dict[str, Any]) -> Claim | None:
        prefix = f"registry-gen:{self.model_name}:"
        for tag in doc.get("tags") or []:
            if tag.startswith(prefix) and tag[len(prefix) :].isdigit():
                return Claim(str(doc["id"]), int(tag[len(prefix) :]), str(doc.get("created")), doc["comment"])
        return None

    def _delete_claim(self, claim_id: str) -> None:
        try:
            self.api.call("tasks.delete", task=claim_id, force=True)
        except ApiCallError as exc:
            if (exc.code, exc.subcode) not in ALREADY_GONE:
                log.warning("could not delete the losing claim %s: %s", claim_id, exc)

    def _create_claim(self, state: RegistryState, reason: str) -> str:
        project_id = self._registry_project_id(create=True)
        payload = {"state": json.loads(state.to_json()), "reason": reason, "writer": self.writer}
        data = self.api.call(
            "tasks.create",
            name=self.event_name(state.generation),
            type=TASK_TYPE,
            project=project_id,
            tags=[self.generation_tag(state.generation)],
            system_tags=[EVENT_SYSTEM_TAG, HIDDEN],
            comment=json.dumps(payload, sort_keys=True),
        )
        return str(data["id"])

    def _after_claim(self, claim_id: str) -> None:
        """Hook between a winning claim and its tag projection (tests kill the process here)."""

    # ------------------------------------------------------------------ reading
    def read(self) -> RegistryState:
        """THE current state: the winner of the newest generation (an empty state before any event)."""
        try:
            claims = self._claims()
        except ApiCallError as exc:
            raise RegistryError(f"cannot read the model registry of {self.project}: {exc}") from exc
        if not claims:
            return RegistryState()
        winner = min(claims, key=lambda c: c.order)
        for loser in claims:
            if loser.id != winner.id:  # a writer killed before it deleted its losing claim
                self._delete_claim(loser.id)
        return winner.state()

    def history(self, limit: int = 50) -> list[tuple[RegistryState, str]]:
        """The newest ``limit`` winning events, newest first: (state, reason)."""
        project_id = self._registry_project_id(create=False)
        if project_id is None:
            return []
        docs = self.api.call(
            "tasks.get_all",
            project=[project_id],
            system_tags=[EVENT_SYSTEM_TAG],
            name=f"^{re.escape(f'registry {self.model_name} gen-')}",
            search_hidden=True,
            order_by=["-name", "created"],
            page=0,
            page_size=max(1, limit) * 3,
            only_fields=["id", "name", "created", "comment", "tags"],
        )["tasks"]
        winners: dict[int, Claim] = {}
        for claim in (c for c in (self._claim_of(d) for d in docs) if c is not None):
            best = winners.get(claim.generation)
            if best is None or claim.order < best.order:
                winners[claim.generation] = claim
        out = []
        for generation in sorted(winners, reverse=True)[:limit]:
            claim = winners[generation]
            out.append((claim.state(), str(json.loads(claim.comment).get("reason", ""))))
        return out

    # ------------------------------------------------------------------ writing
    def transition(
        self, change: Callable[[RegistryState], RegistryState | None], reason: str
    ) -> RegistryState:
        """Apply ``change`` to the current state with compare-and-set; returns the resulting state.

        ``change`` gets a copy of the current state and returns the new one, or None when there is
        nothing to do (then the current state is returned and nothing is written). It may raise
        :class:`TransitionRefused`. It is called again on every retry, on the newer state.
        """
        for attempt in range(1, self.max_attempts + 1):
            try:
                claims = self._claims()
                current = min(claims, key=lambda c: c.order).state() if claims else RegistryState()
                if attempt == 1:
                    self._project(current)  # repair what a process killed before its projection left
                new = change(current.copy())
                if new is None:
                    return current
                new.generation = current.generation + 1
                new.updated_at = time.time()
                broken = new.problems()
                if broken:
                    raise RegistryError(f"a transition would break the registry: {'; '.join(broken)}")
                mine = self._create_claim(new, reason)
                if self.settle_seconds:
                    time.sleep(self.settle_seconds)
                contenders = self._claims(new.generation)
            except ApiCallError as exc:
                raise RegistryError(f"model registry of {self.project}: {exc}") from exc
            winner = min(contenders, key=lambda c: c.order) if contenders else None
            if winner is not None and winner.id == mine:
                log.info("registry %s gen %d: %s", self.model_name, new.generation, reason)
                self._after_claim(mine)
                try:
                    self.sync_tags(new)
                except RegistryError as exc:  # the event stands; the next sync repairs the tags
                    log.warning("registry %s gen %d: %s", self.model_name, new.generation, exc)
                return new
            self._delete_claim(mine)
            self.lost_claims += 1
            log.info(
                "registry %s gen %d: lost to %s, retrying",
                self.model_name,
                new.generation,
                winner.id if winner else "a claim not listed yet",
            )
            time.sleep(random.uniform(0.0, min(0.5, 0.02 * attempt)))
        raise RegistryError(
            f"model registry of {self.project}: gave up after {self.max_attempts} attempts "
            f"(every claim lost to a concurrent writer): {reason}"
        )

    # ------------------------------------------------------------------ named transitions
    def submit(self, model_id: str, reason: str) -> RegistryState:
        """The gate passed ``model_id``: publish it, give it the next version; champion if there is
        none yet, else a waiting candidate. Again on a submitted model: nothing changes."""
        self._publish(model_id)

        def change(state: RegistryState) -> RegistryState | None:
            current = state.state_of(model_id)
            if current in PUBLISHED_STATES:
                return None
            if current is not None:
                raise TransitionRefused(
                    f"model {model_id} is {current}: a {current} model cannot be submitted again"
                )
            _give_version(state, model_id)
            if state.champion is None:
                state.champion = model_id
                state.states[model_id] = CHAMPION
            else:
                state.candidates.append(model_id)
                state.states[model_id] = CANDIDATE
            state.reasons[model_id] = reason
            return state

        return self.transition(change, f"submit {model_id}: {reason}")

    def submit_and_promote(self, model_id: str, reason: str) -> RegistryState:
        """Deploy mode "direct" (no canary controller): ``model_id`` becomes champion at once, in one
        event (published, versioned; the champion before becomes a former champion)."""
        self._publish(model_id)

        def change(state: RegistryState) -> RegistryState | None:
            current = state.state_of(model_id)
            if current == CHAMPION:
                return None
            if current not in (None, CANDIDATE, CANARY):
                raise TransitionRefused(
                    f"model {model_id} is {current}: only a new model, a candidate or the canary "
                    "can be promoted directly"
                )
            if current is None:
                _give_version(state, model_id)
            if current == CANDIDATE:
                state.candidates.remove(model_id)
            if current == CANARY:
                state.canary = None
            _crown(state, model_id, reason)
            return state

        return self.transition(change, f"submit and promote {model_id}: {reason}")

    def reject(self, model_id: str, reason: str) -> RegistryState:
        """The gate refused ``model_id``: it is recorded as rejected (never published by us)."""

        def change(state: RegistryState) -> RegistryState | None:
            current = state.state_of(model_id)
            if current == REJECTED:
                return None
            if current is not None:
                raise TransitionRefused(
                    f"model {model_id} is {current}: only a model the gate has not passed can be rejected"
                    + (" (use rollback)" if current in (CANDIDATE, CANARY) else "")
                )
            state.states[model_id] = REJECTED
            state.reasons[model_id] = reason
            return state

        return self.transition(change, f"reject {model_id}: {reason}")

    def start_canary(self, model_id: str, weight: float, now: float) -> RegistryState:
        """candidate → canary, with ``weight`` of the traffic (only while no other canary runs)."""
        if not 0.0 <= weight <= 1.0:
            raise TransitionRefused(f"canary weight {weight} must be within [0, 1]")

        def change(state: RegistryState) -> RegistryState | None:
            current = state.state_of(model_id)
            if current == CANARY:
                return None
            if state.canary is not None:
                raise TransitionRefused(
                    f"model {state.canary.model_id} is the canary already: cannot start {model_id}"
                )
            if current != CANDIDATE:
                raise TransitionRefused(
                    f"model {model_id} is {current or 'unknown to the registry'}: only a candidate "
                    "can become the canary"
                )
            state.candidates.remove(model_id)
            state.canary = CanaryState(model_id, 0, weight, now, now)
            state.states[model_id] = CANARY
            state.reasons[model_id] = f"canary at {weight:.0%}"
            return state

        return self.transition(change, f"start canary {model_id} at {weight:.0%}")

    def update_canary(self, model_id: str, **changes: Any) -> RegistryState:
        """Change the canary's progress fields (step, weight, step_started_at, passes, failures,
        paused, last_reason), only while ``model_id`` is still the canary. No change: no event."""
        unknown = set(changes) - CANARY_FIELDS
        if unknown:
            raise TransitionRefused(
                f"update_canary: unknown field(s) {', '.join(sorted(unknown))}; "
                f"allowed: {', '.join(sorted(CANARY_FIELDS))}"
            )

        def change(state: RegistryState) -> RegistryState | None:
            if state.canary is None or state.canary.model_id != model_id:
                raise TransitionRefused(
                    f"model {model_id} is {state.state_of(model_id) or 'unknown to the registry'}, "
                    "not the canary: its canary progress cannot change"
                )
            updated = replace(state.canary, **changes)
            if updated == state.canary:
                return None
            state.canary = updated
            return state

        described = ", ".join(f"{k}={v!r}" for k, v in sorted(changes.items()))
        return self.transition(change, f"update canary {model_id}: {described}")

    def promote(self, model_id: str, reason: str) -> RegistryState:
        """canary → champion; the champion before becomes a former champion (kept for rollback)."""

        def change(state: RegistryState) -> RegistryState | None:
            if state.champion == model_id:
                return None
            if state.canary is None or state.canary.model_id != model_id:
                current = state.state_of(model_id) or "unknown to the registry"
                raise TransitionRefused(
                    f"model {model_id} is {current}, not the canary: only the canary can be promoted"
                )
            state.canary = None
            _crown(state, model_id, reason)
            return state

        return self.transition(change, f"promote {model_id}: {reason}")

    def rollback(self, model_id: str, reason: str) -> RegistryState:
        """canary or candidate → rolled-back (serving keeps the champion); or the champion →
        rolled-back, the newest former champion becoming the champion again (no canary running)."""

        def change(state: RegistryState) -> RegistryState | None:
            current = state.state_of(model_id)
            if current == ROLLED_BACK:
                return None
            if current == CANARY:
                state.canary = None
            elif current == CANDIDATE:
                state.candidates.remove(model_id)
            elif current == CHAMPION:
                if state.canary is not None:
                    raise TransitionRefused(
                        f"model {model_id} is the champion and canary {state.canary.model_id} is running: "
                        "roll the canary back first"
                    )
                if not state.former:
                    raise TransitionRefused(
                        f"model {model_id} is the champion and there is no former champion to return to"
                    )
                restored = state.former.pop(0)
                state.champion = restored
                state.states[restored] = CHAMPION
                state.reasons[restored] = f"champion again: {model_id} rolled back"
            else:
                raise TransitionRefused(
                    f"model {model_id} is {current or 'unknown to the registry'}: only a candidate, the "
                    "canary or the champion (to the former champion) can be rolled back"
                )
            state.states[model_id] = ROLLED_BACK
            state.reasons[model_id] = reason
            return state

        return self.transition(change, f"rollback {model_id}: {reason}")

    # ------------------------------------------------------------------ projection onto the models
    def _set_ready(self, model_id: str) -> None:
        """Publish a model; one that another process published meanwhile is fine (the real server
        refuses ``set_ready`` on a ready model with 400/203)."""
        try:
            self.api.call("models.set_ready", model=model_id, publish_task=False)
        except ApiCallError as exc:
            if (exc.code, exc.subcode) not in ALREADY_READY:
                raise

    def _publish(self, model_id: str) -> None:
        try:
            model = self.api.call("models.get_by_id", model=model_id)["model"]
            if not model.get("ready"):
                self._set_ready(model_id)
        except ApiCallError as exc:
            raise RegistryError(f"cannot publish model {model_id}: {exc}") from exc

    def _project_ids(self) -> list[str]:
        found = self.api.call(
            "projects.get_all",
            name=f"^{re.escape(self.project)}(/|$)",
            search_hidden=True,
            only_fields=["id"],
        )["projects"]
        return [str(p["id"]) for p in found]

    def sync_tags(self, state: RegistryState | None = None) -> None:
        """Make the models' tags and metadata say what the current state says.

        Idempotent; writes only where a model differs. Models of the project carrying a registry tag
        that the state does not give them lose it. The new champion is tagged before the former one
        is untagged, so a reader of tags sees at least one champion, never none. ``state`` saves a
        read; after projecting, the state is read again and projected again if a newer generation
        appeared meanwhile (a slow process must not leave an older state's tags behind).
        """
        try:
            if state is None:
                state = self.read()
            for _ in range(5):
                self._project(state)
                head = self.read()
                if head == state:
                    return
                state = head
            log.warning("registry %s: the state kept moving while its tags were synced", self.model_name)
        except ApiCallError as exc:
            raise RegistryError(f"cannot project the registry state onto the models: {exc}") from exc

    def _project(self, state: RegistryState) -> None:
        known = list(state.states)
        docs: dict[str, dict[str, Any]] = {}
        only = ["id", "tags", "metadata", "ready", "name"]
        for start in range(0, len(known), 200):
            for doc in self.api.call("models.get_all", id=known[start : start + 200], only_fields=only)[
                "models"
            ]:
                docs[str(doc["id"])] = doc
        projects = self._project_ids()
        if projects:
            for doc in self.api.call(
                "models.get_all",
                project=projects,
                name=f"^{re.escape(self.model_name)}$",
                tags=list(STATES),
                only_fields=only,
            )["models"]:
                docs.setdefault(str(doc["id"]), doc)
        for model_id in sorted(docs, key=lambda m: (state.states.get(m) != CHAMPION, m)):
            self._project_model(state, docs[model_id])

    def _project_model(self, state: RegistryState, doc: dict[str, Any]) -> None:
        model_id = str(doc["id"])
        wanted = state.states.get(model_id)
        tags = list(doc.get("tags") or [])
        desired = sorted({t for t in tags if t not in STATES} | ({wanted} if wanted else set()))
        if sorted(tags) != desired:
            self.api.call("models.update", model=model_id, tags=desired)
        if wanted in PUBLISHED_STATES and not doc.get("ready"):
            self._set_ready(model_id)
        if wanted is None:
            return
        meta = {k: str((v or {}).get("value")) for k, v in (doc.get("metadata") or {}).items()}
        desired_meta = {
            "registry_state": wanted,
            "registry_reason": state.reasons.get(model_id, ""),
        }
        version = state.versions.get(model_id)
        if version is not None:
            desired_meta["registry_version"] = str(version)
        if any(meta.get(k) != v for k, v in desired_meta.items()):
            self.api.call(
                "models.add_or_update_metadata",
                model=model_id,
                metadata=[{"key": k, "type": "str", "value": v} for k, v in desired_meta.items()],
            )


def _give_version(state: RegistryState, model_id: str) -> None:
    state.versions[model_id] = max(state.versions.values(), default=0) + 1


def _crown(state: RegistryState, model_id: str, reason: str) -> None:
    """``model_id`` becomes the champion; the champion before it a former champion."""
    previous = state.champion
    if previous is not None and previous != model_id:
        state.states[previous] = FORMER
        state.former.insert(0, previous)
        state.reasons[previous] = f"replaced by {model_id}"
    if model_id in state.former:
        state.former.remove(model_id)
    state.champion = model_id
    state.states[model_id] = CHAMPION
    state.reasons[model_id] = reason
