"""The model registry against the local server: every transition and its idempotence, refusals,
writers racing in several processes, and a writer SIGKILLed between its event and its tags."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from clearml.backend_api import Session

from occupancy_mlops.clearml_api import ApiCallError, ClearmlApi
from tests.conftest import run_python
from training.registry import (
    CANARY,
    CANDIDATE,
    CHAMPION,
    EVENT_SYSTEM_TAG,
    FORMER,
    REJECTED,
    ROLLED_BACK,
    STATES,
    ModelRegistry,
    RegistryError,
    RegistryState,
    TransitionRefused,
)

MODEL = "occupancy-mlp"


def _api(env: dict[str, str]) -> ClearmlApi:
    return ClearmlApi(
        Session(
            api_key=env["CLEARML_API_ACCESS_KEY"],
            secret_key=env["CLEARML_API_SECRET_KEY"],
            host=env["CLEARML_API_HOST"],
        )
    )


class World:
    """A fresh project with a registry and a way to make models (plain ``models.create``)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.api = _api(env)
        self.project = f"Registry-{uuid.uuid4().hex[:8]}"
        self.project_id = self.api.call("projects.create", name=self.project)["id"]
        self.registry = ModelRegistry(self.project, MODEL, api=self.api)

    def model(self, name: str = MODEL) -> str:
        return str(
            self.api.call(
                "models.create",
                name=name,
                project=self.project_id,
                uri=f"file:///m/{uuid.uuid4().hex}",
                ready=False,  # as the SDK's OutputModel creates it (the server's default is ready)
            )["id"]
        )

    def doc(self, model_id: str) -> dict:
        return self.api.call("models.get_by_id", model=model_id)["model"]

    def tags(self, model_id: str) -> list[str]:
        return sorted(self.doc(model_id).get("tags") or [])

    def meta(self, model_id: str, key: str) -> str | None:
        item = (self.doc(model_id).get("metadata") or {}).get(key)
        return None if item is None else str(item["value"])

    def tagged(self, tag: str) -> list[str]:
        docs = self.api.call("models.get_all", project=[self.project_id], tags=[tag], only_fields=["id"])
        return sorted(d["id"] for d in docs["models"])

    def events(self) -> list[dict]:
        registry_project = self.api.call(
            "projects.get_all", name=f"^{self.project}/\\.registry$", search_hidden=True, only_fields=["id"]
        )["projects"]
        return self.api.call(
            "tasks.get_all",
            project=[registry_project[0]["id"]],
            system_tags=[EVENT_SYSTEM_TAG],
            search_hidden=True,
            only_fields=["id", "name", "tags", "created", "comment", "system_tags", "type", "status"],
        )["tasks"]


@pytest.fixture
def world(clearml_env) -> World:
    return World(clearml_env)


def test_every_transition_once_and_again(world):
    reg = world.registry
    assert reg.read() == RegistryState(), "no event yet: the empty state"
    a, b, c, d, e = (world.model() for _ in range(5))

    # the first submitted model is the champion (published, version 1)
    s1 = reg.submit(a, "first model")
    assert (s1.generation, s1.champion, s1.versions, s1.states) == (1, a, {a: 1}, {a: CHAMPION})
    assert reg.submit(a, "first model again") == s1, "idempotent: no new event"
    assert world.doc(a)["ready"] and world.tags(a) == [CHAMPION]
    assert world.meta(a, "registry_version") == "1" and world.meta(a, "registry_state") == CHAMPION

    # the next one waits as a candidate
    s2 = reg.submit(b, "better than the champion")
    assert (s2.generation, s2.candidates, s2.versions[b], s2.champion) == (2, [b], 2, a)
    assert world.doc(b)["ready"] and world.tags(b) == [CANDIDATE]
    assert reg.submit(b, "again") == s2

    s3 = reg.start_canary(b, 0.1, now=1000.0)
    assert s3.canary is not None and (s3.canary.model_id, s3.canary.weight, s3.canary.step) == (b, 0.1, 0)
    assert s3.candidates == [] and s3.states[b] == CANARY and world.tags(b) == [CANARY]
    assert reg.start_canary(b, 0.1, now=2000.0) == s3, "starting the running canary again: nothing"

    s4 = reg.update_canary(b, passes=1, last_reason="all checks passed")
    assert s4.generation == 4 and s4.canary is not None and s4.canary.passes == 1
    assert reg.update_canary(b, passes=1, last_reason="all checks passed") == s4, "no change, no event"
    s5 = reg.update_canary(b, step=1, weight=0.25, passes=0, step_started_at=1060.0)
    assert s5.canary is not None and (s5.canary.step, s5.canary.weight, s5.canary.started_at) == (
        1,
        0.25,
        1000.0,
    )

    s6 = reg.promote(b, "every step passed")
    assert (s6.champion, s6.canary, s6.former, s6.states[a], s6.states[b]) == (b, None, [a], FORMER, CHAMPION)
    assert reg.promote(b, "again") == s6
    assert world.tags(b) == [CHAMPION] and world.tags(a) == [FORMER]
    assert world.meta(a, "registry_reason") == f"replaced by {b}"
    assert world.meta(b, "registry_reason") == "every step passed"

    # rollback from candidate, and from canary
    s7 = reg.submit(c, "candidate")
    s8 = reg.rollback(c, "superseded")
    assert s8.states[c] == ROLLED_BACK and s8.candidates == [] and s8.versions[c] == 3
    assert reg.rollback(c, "again") == s8
    assert world.tags(c) == [ROLLED_BACK] and world.meta(c, "registry_reason") == "superseded"
    reg.submit(d, "candidate")
    reg.start_canary(d, 0.1, now=3000.0)
    s10 = reg.rollback(d, "error ratio 0.5 > 0.05 (2 failed analyses)")
    assert s10.canary is None and s10.states[d] == ROLLED_BACK and s10.champion == b
    assert world.tags(d) == [ROLLED_BACK]

    # the gate's refusal: recorded, not published, no version
    s11 = reg.reject(e, "below the floor")
    assert s11.states[e] == REJECTED and e not in s11.versions and not world.doc(e)["ready"]
    assert reg.reject(e, "again") == s11 and world.tags(e) == [REJECTED]

    # the log: one event per transition, each a whole state, generations 1..12
    events = world.events()
    assert sorted(int(t["name"].rsplit("-", 1)[1]) for t in events) == list(range(1, 13))
    assert all(t["type"] == "custom" and t["status"] == "created" for t in events)
    newest = max(events, key=lambda t: t["name"])
    assert RegistryState.from_json(json.loads(newest["comment"])["state"]) == s11 == reg.read()
    history = reg.history(limit=3)
    assert [h[0].generation for h in history] == [12, 11, 10]
    assert history[0][1] == f"reject {e}: below the floor"
    assert s7.generation == 7
    for state, _ in reg.history(limit=20):
        assert state.problems() == []


def test_invalid_transitions_are_refused_with_a_reason(world):
    reg = world.registry
    a, b, c, rejected = (world.model() for _ in range(4))
    with pytest.raises(TransitionRefused, match="only the canary can be promoted"):
        reg.promote(a, "no such canary")
    reg.submit(a, "first")
    reg.submit(b, "second")
    reg.reject(rejected, "below the floor")
    before = reg.read()

    with pytest.raises(TransitionRefused, match=f"model {b} is candidate, not the canary"):
        reg.promote(b, "too early")
    with pytest.raises(TransitionRefused, match="no former champion to return to"):
        reg.rollback(a, "the only champion")
    with pytest.raises(TransitionRefused, match="only a candidate, the canary or the champion"):
        reg.rollback(rejected, "a rejected model")
    with pytest.raises(TransitionRefused, match="rejected model cannot be submitted again"):
        reg.submit(rejected, "second try")
    with pytest.raises(TransitionRefused, match="use rollback"):
        reg.reject(b, "changed my mind")
    with pytest.raises(TransitionRefused, match="only a candidate can become the canary"):
        reg.start_canary(a, 0.1, now=1.0)
    with pytest.raises(TransitionRefused, match="not the canary"):
        reg.update_canary(b, passes=1)
    with pytest.raises(TransitionRefused, match="must be within"):
        reg.start_canary(b, 1.5, now=1.0)
    reg.submit(c, "third")
    reg.start_canary(b, 0.1, now=1.0)
    with pytest.raises(TransitionRefused, match=f"model {b} is the canary already"):
        reg.start_canary(c, 0.1, now=2.0)
    with pytest.raises(TransitionRefused, match="unknown field"):
        reg.update_canary(b, started_at=5.0)
    after = reg.read()
    assert after.generation == before.generation + 2, "refusals write nothing"


def test_the_champion_rolls_back_to_the_former_champion(world):
    reg = world.registry
    a, b, c = (world.model() for _ in range(3))
    reg.submit(a, "first")
    reg.submit(b, "second")
    reg.start_canary(b, 0.1, now=1.0)
    with pytest.raises(TransitionRefused, match="roll the canary back first"):
        reg.rollback(a, "bad night")
    reg.promote(b, "good canary")
    reg.submit(c, "third")
    state = reg.rollback(b, "manual: drifted after promotion")
    assert (state.champion, state.state_of(b), state.state_of(a)) == (a, "rolled-back", "champion")
    assert state.former == [] and state.candidates == [c] and state.problems() == []
    assert reg.rollback(b, "again").generation == state.generation, "idempotent"
    reg.sync_tags()
    assert "champion" in world.tags(a) and "rolled-back" in world.tags(b)


def test_direct_mode_promotes_in_one_event(world):
    reg = world.registry
    a, b, c = world.model(), world.model(), world.model()
    assert reg.submit_and_promote(a, "first model").champion == a
    s2 = reg.submit_and_promote(b, "at least as good")
    assert (s2.generation, s2.champion, s2.former, s2.versions) == (2, b, [a], {a: 1, b: 2})
    assert reg.submit_and_promote(b, "again") == s2
    reg.submit(c, "a candidate first")
    s4 = reg.submit_and_promote(c, "promoted directly")
    assert (s4.champion, s4.former, s4.candidates) == (c, [b, a], [])
    assert world.tagged(CHAMPION) == [c] and world.tagged(FORMER) == sorted([a, b])
    with pytest.raises(TransitionRefused, match="former-champion"):
        reg.submit_and_promote(a, "back")


def test_sync_tags_repairs_tags_left_by_others(world):
    """A stray registry tag (say, the old gate's ``champion``) or a removed one is set right."""
    reg = world.registry
    a, b, stray = world.model(), world.model(), world.model()
    reg.submit(a, "first")
    reg.submit(b, "second")
    world.api.call("models.update", model=stray, tags=[CHAMPION, "keep-me"])
    world.api.call("models.update", model=a, tags=["keep-me"])
    world.api.call("models.update", model=b, tags=[CHAMPION, CANARY])
    reg.sync_tags()
    assert world.tags(a) == [CHAMPION, "keep-me"]
    assert world.tags(b) == [CANDIDATE] and world.tags(stray) == ["keep-me"]
    other = world.model(name="another-model")  # another model name: not this registry's business
    world.api.call("models.update", model=other, tags=[CHAMPION])
    reg.sync_tags()
    assert world.tags(other) == [CHAMPION]


KILLED = """
import os, signal, sys
from training.registry import ModelRegistry

reg = ModelRegistry({project!r}, {model!r})
reg._after_claim = lambda claim_id: os.kill(os.getpid(), signal.SIGKILL)
reg.{call}
print("not killed")
"""


def _run_killed(world: World, call: str) -> None:
    code = KILLED.format(project=world.project, model=MODEL, call=call)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=world.env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -9, proc.stdout + proc.stderr


def test_a_writer_killed_between_its_event_and_its_tags(world):
    reg = world.registry
    a, b, c = world.model(), world.model(), world.model()
    reg.submit(a, "first")
    reg.submit(b, "second")
    reg.start_canary(b, 0.5, now=1.0)

    _run_killed(world, f"promote({b!r}, 'passed')")
    state = reg.read()
    assert (state.champion, state.former, state.canary) == (b, [a], None), "the event is whole"
    assert world.tags(a) == [CHAMPION] and world.tags(b) == [CANARY], "its tags were never projected"
    reg.sync_tags()
    assert world.tags(a) == [FORMER] and world.tags(b) == [CHAMPION]

    # a kill before its projection again; this time the next transition repairs on its way
    _run_killed(world, f"submit({c!r}, 'third')")
    assert reg.read().states[c] == CANDIDATE and world.doc(c)["ready"] and world.tags(c) == []
    reg.rollback(c, "not wanted")  # reads, re-projects, then writes its own event
    assert world.tags(c) == [ROLLED_BACK] and world.tagged(CHAMPION) == [b]
    assert [int(t["name"].rsplit("-", 1)[1]) for t in world.events()].count(5) == 1


RACER = """
import collections, json, random, sys, time
from occupancy_mlops.clearml_api import ClearmlApi
from training.registry import ModelRegistry, TransitionRefused

project, project_id, seed, rounds = {project!r}, {project_id!r}, {seed}, {rounds}
api = ClearmlApi()
reg = ModelRegistry(project, {model!r}, api=api)
rng = random.Random(seed)
counts = collections.Counter()
time.sleep(max(0.0, {start_at} - time.time()))  # every racer starts at the same moment
started = time.monotonic()
for i in range(rounds):
    state = reg.read()
    op = "submit" if i == 0 else rng.choice(["submit", "canary", "canary", "promote", "promote", "rollback"])
    try:
        if op == "submit":
            model = api.call("models.create", name={model!r}, project=project_id, uri=f"file:///m/{{seed}}-{{i}}")
            reg.submit(model["id"], f"racer {{seed}}")
        elif op == "canary" and state.candidates:
            reg.start_canary(state.candidates[-1], 0.1, time.time())
        elif op == "promote" and state.canary:
            reg.promote(state.canary.model_id, f"racer {{seed}}")
        elif op == "rollback" and (state.canary or state.candidates):
            reg.rollback(state.canary.model_id if state.canary else state.candidates[0], f"racer {{seed}}")
        else:
            op = "nothing"
        counts[op] += 1
    except TransitionRefused:
        counts["refused"] += 1
print(json.dumps({{"counts": counts, "lost": reg.lost_claims, "seconds": time.monotonic() - started}}))
"""

READER = """
import json, os, time
from training.registry import CHAMPION, ModelRegistry

reg = ModelRegistry({project!r}, {model!r})
reads, last, started = 0, 0, time.monotonic()
while not os.path.exists({stop!r}):
    state = reg.read()
    reads += 1
    assert state.generation >= last, ("the state went back", last, state.generation)
    last = state.generation
    if state.generation:
        champions = [m for m, s in state.states.items() if s == CHAMPION]
        assert champions == [state.champion], state
        assert state.problems() == [], state.problems()
print(json.dumps({{"reads": reads, "last": last, "seconds": time.monotonic() - started}}))
"""

ALLOWED = {
    (None, CHAMPION),
    (None, CANDIDATE),
    (None, REJECTED),
    (CANDIDATE, CANARY),
    (CANDIDATE, ROLLED_BACK),
    (CANDIDATE, CHAMPION),
    (CANARY, CHAMPION),
    (CANARY, ROLLED_BACK),
    (CHAMPION, FORMER),
    (CHAMPION, ROLLED_BACK),  # a champion rolled back to the former champion
    (FORMER, CHAMPION),
}


def test_racing_writers_one_winner_per_generation_and_always_one_champion(world, tmp_path):
    racers, rounds = 4, 25
    stop = tmp_path / "stop"
    start_at = time.time() + 4.0  # after every child has imported clearml

    def spawn(code: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=world.env,
            cwd=world.env["HOME"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    started = time.monotonic()
    reader = spawn(READER.format(project=world.project, model=MODEL, stop=str(stop)))
    writers = [
        spawn(
            RACER.format(
                project=world.project,
                project_id=world.project_id,
                seed=seed,
                rounds=rounds,
                model=MODEL,
                start_at=start_at,
            )
        )
        for seed in range(racers)
    ]
    outs = []
    for proc in writers:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, out + err[-4000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    stop.touch()
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, out + err[-4000:]
    read = json.loads(out.strip().splitlines()[-1])
    elapsed = time.monotonic() - started

    # every generation 1..N has exactly one event left: the losers deleted their claims
    events = world.events()
    generations = sorted(int(t["name"].rsplit("-", 1)[1]) for t in events)
    assert generations == list(range(1, len(generations) + 1)), generations
    states = [
        RegistryState.from_json(json.loads(t["comment"])["state"])
        for t in sorted(events, key=lambda t: t["name"])
    ]
    # a consistent sequence: each state is a valid transition of the one before, invariants hold
    previous = RegistryState()
    for state in states:
        assert state.problems() == [], (state.generation, state.problems())
        assert state.champion is not None, "one champion from the first event on"
        changed = {
            m for m in {*previous.states, *state.states} if previous.states.get(m) != state.states.get(m)
        }
        for model_id in changed:
            move = (previous.states.get(model_id), state.states.get(model_id))
            assert move in ALLOWED, (state.generation, model_id, move)
        assert all(state.versions[m] == v for m, v in previous.versions.items()), "versions never change"
        previous = state
    final = world.registry.read()
    assert final == states[-1] and read["last"] <= final.generation
    submitted = sum(o["counts"].get("submit", 0) for o in outs)
    lost = sum(o["lost"] for o in outs)
    assert lost > 0, "the writers did race: some claims lost and were retried"
    assert sum(o["counts"].get("promote", 0) for o in outs) > 0
    assert sorted(final.versions.values()) == list(range(1, submitted + 1)), "one version per submit"

    # the projection agrees: exactly one model tagged champion, every model tagged with its state
    world.registry.sync_tags()
    assert world.tagged(CHAMPION) == [final.champion]
    for tag in STATES:
        assert world.tagged(tag) == sorted(m for m, s in final.states.items() if s == tag), tag
    print(
        f"race: {racers} writers x {rounds} rounds, {len(generations)} generations, "
        f"{read['reads']} reads, {lost} lost claims, {elapsed:.1f} s; "
        f"writers {[round(o['seconds'], 1) for o in outs]} s; "
        f"{[o['counts'] for o in outs]}"
    )


def test_two_gates_race_for_the_first_champion(world):
    """Two processes submit the first two models at the same moment: one champion, one candidate."""
    code = """
import json, sys, threading
from training.registry import ModelRegistry
reg = ModelRegistry({project!r}, {model!r})
print(json.dumps(reg.submit({model_id!r}, "gate").states))
"""
    ids = [world.model(), world.model()]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code.format(project=world.project, model=MODEL, model_id=i)],
            env=world.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in ids
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
    state = world.registry.read()
    assert state.generation == 2 and sorted(state.states.values()) == [CANDIDATE, CHAMPION]
    assert world.tagged(CHAMPION) == [state.champion]
    code = f"from training.registry import ModelRegistry as R; print(R({world.project!r}).read().champion)"
    assert run_python(code, world.env).strip() == state.champion, "another process reads the same"


def test_an_empty_registry_adopts_the_champion_tagged_by_the_old_gate(world):
    """An installation from before the registry: its published ``champion``-tagged model becomes the
    registry's first champion (version 1) when the gate first asks."""
    legacy, challenger = world.model(), world.model()
    world.api.call("models.set_ready", model=legacy, publish_task=False)
    world.api.call("models.update", model=legacy, tags=[CHAMPION])
    code = f"""
from training.gate import current_champion
from training.registry import ModelRegistry
reg = ModelRegistry({world.project!r})
print(current_champion(reg, {challenger!r}))
print(current_champion(reg, {challenger!r}))
"""
    assert run_python(code, world.env).split() == [legacy, legacy]
    state = world.registry.read()
    assert (state.generation, state.champion, state.versions) == (1, legacy, {legacy: 1})
    assert "adopted" in state.reasons[legacy] and world.tags(legacy) == [CHAMPION]


class _PublishedMeanwhile:
    """An API whose model reads as a draft, then is refused as ready: another process published it
    between the read and ``set_ready`` (the real server answers 400/203)."""

    def __init__(self, subcode: int) -> None:
        self.subcode = subcode
        self.calls: list[str] = []

    def call(self, endpoint: str, **body: object) -> dict:
        self.calls.append(endpoint)
        if endpoint == "models.get_by_id":
            return {"model": {"id": body["model"], "ready": False}}
        raise ApiCallError(endpoint, 400, self.subcode, "model is ready")


def test_publishing_a_model_that_was_published_meanwhile_is_not_an_error():
    api = _PublishedMeanwhile(203)
    ModelRegistry("P", api=api)._publish("m1")  # type: ignore[arg-type]
    assert api.calls == ["models.get_by_id", "models.set_ready"]
    with pytest.raises(RegistryError, match="cannot publish model m1"):
        ModelRegistry("P", api=_PublishedMeanwhile(201))._publish("m1")  # type: ignore[arg-type]
