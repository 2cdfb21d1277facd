"""The canary controller end to end, every piece real (see conftest.py): a good challenger promoted
through every step under replayed traffic; one with injected errors and one with a skewed prediction
distribution rolled back within two analysis intervals; one whose distribution matches but whose
answers are wrong, rolled back on the replay client's delayed labels; a manual pause, resume and
rollback during a step, and a manual promotion; no decision without Prometheus; the controller
SIGKILLed in every state and resuming where it was, a second one racing it."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from local_server.runner import free_port
from occupancy_mlops.local_stack import canary_process
from occupancy_mlops.report import serving_series
from tests.canary.conftest import ANALYSIS_SECONDS, MIN_LABELS, POLL_SECONDS, Stack
from tests.serving.server import cli
from training.registry import RegistryState

SCRAPE_SECONDS = 1.0


def canary_steps(stack: Stack, model_id: str) -> list[tuple[int, float]]:
    """The (step, weight) the registry recorded for ``model_id``'s canary, in order, each once."""
    seen: list[tuple[int, float]] = []
    for state, _ in reversed(stack.registry.history(500)):
        canary = state.canary
        if canary is not None and canary.model_id == model_id and (canary.step, canary.weight) not in seen:
            seen.append((canary.step, canary.weight))
    return seen


def events(stack: Stack, model_id: str) -> list[tuple[RegistryState, str]]:
    """Registry events naming ``model_id``, oldest first."""
    return [(s, r) for s, r in reversed(stack.registry.history(500)) if model_id in r]


def when_state_began(stack: Stack, model_id: str, name: str) -> float:
    """Unix time of the registry event that put ``model_id`` in state ``name``."""
    for state, _ in reversed(stack.registry.history(500)):
        if state.states.get(model_id) == name:
            return state.updated_at
    raise AssertionError(f"{model_id} was never {name}")


def start_cli(stack: Stack, *args: str) -> subprocess.Popen[str]:
    """``occupancy-mlops ARGS`` started in the background (each costs seconds of imports)."""
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("occupancy-mlops")), *args],
        env=stack.env,
        cwd=stack.env["HOME"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_cli(proc: subprocess.Popen[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_answers(stack: Stack, what: str, check, since: float, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while True:
        answers = stack.answers_since(since)
        if check(answers):
            return answers
        if time.monotonic() > deadline:
            arms = sorted({(a.status, a.arm, a.model_version) for a in answers})
            pytest.fail(f"timed out waiting for {what}; answers since: {arms}\n{stack.log_tail()}")
        time.sleep(0.1)


def first_canary_answer(stack: Stack, since: float, timeout: float = 20) -> float:
    """When the replay first met the canary arm (an answer from it, or an error)."""
    answers = wait_answers(
        stack,
        "the canary's first answer",
        lambda xs: any(a.arm == "canary" or a.status >= 500 for a in xs),
        since,
        timeout,
    )
    return min(a.sent_at for a in answers if a.arm == "canary" or a.status >= 500)


def champion_only_after(stack: Stack, since: float, version: str, timeout: float = 20) -> None:
    """Serving follows the registry: after ``since`` (+ its config poll), only the champion answers."""

    def settled(answers) -> bool:
        tail = [a for a in answers if a.sent_at >= answers[-1].sent_at - 1.0] if answers else []
        return len(tail) >= 20 and all(
            a.status == 200 and a.arm == "champion" and a.model_version == version for a in tail
        )

    wait_answers(stack, f"the champion v{version} alone", settled, since, timeout)


@pytest.fixture(autouse=True)
def no_canary_left_behind(stack: Stack) -> Iterator[None]:
    """Every flow starts and ends with the champion alone, also when a flow failed half-way."""
    yield
    if stack.controller is None:
        stack.start_controller()
    state = stack.state()
    for model in [*state.candidates, *([state.canary.model_id] if state.canary else [])]:
        stack.registry.rollback(model, "manual: test clean-up")
    stack.set_faults(None)


def test_good_challenger_promoted_through_every_step(stack: Stack) -> None:
    model = stack.models["good"]
    before = stack.state()
    submitted = time.time()
    version = str(stack.registry.submit(model, "gate: better than the champion").versions[model])
    state = stack.wait_state(
        "promotion", lambda s: s.champion == model or s.states.get(model) == "rolled-back", 90
    )
    assert state.champion == model, f"rolled back: {state.reasons.get(model)}\n{stack.log_tail()}"
    assert state.former[0] == before.champion, "the champion before is kept for rollback"
    assert canary_steps(stack, model) == [(0, 0.10), (1, 0.25), (2, 0.50), (3, 1.00)]
    assert "passed every step up to 100%" in state.reasons[model]
    answers = stack.answers_since(submitted)
    assert any(a.arm == "canary" and a.model_version == version for a in answers), "canary served"
    promoted = when_state_began(stack, model, "champion")
    champion_only_after(stack, promoted, version)
    metrics = stack.metrics()
    assert "occupancy_canary_promotions_total" in metrics
    assert 'occupancy_canary_state{state="idle"} 1.0' in metrics
    assert 'occupancy_canary_checks_total{check="shift",result="passed"}' in metrics
    assert stack.controller is not None
    ready = requests.get(stack.controller.url + "/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["last_error"] is None, ready.text
    assert requests.get(stack.controller.url + "/healthz", timeout=10).status_code == 200
    started = when_state_began(stack, model, "canary")
    print(f"good challenger: 4 steps, promoted {promoted - started:.1f} s after its canary started")


@pytest.mark.parametrize(
    ("role", "faults", "failing"),
    [
        ("errors", {"canary": {"error_ratio": 0.5}}, "error_ratio"),
        ("skewed", None, "shift"),
    ],
)
def test_bad_challenger_rolled_back_within_two_analysis_intervals(
    stack: Stack, role: str, faults: dict | None, failing: str
) -> None:
    model = stack.models[role]
    champion = stack.state().champion
    assert champion is not None
    champion_version = str(stack.state().versions[champion])
    stack.set_faults(faults)
    try:
        submitted = time.time()
        stack.registry.submit(model, "gate: passed offline")
        live = first_canary_answer(stack, submitted)
        state = stack.wait_state("rollback", lambda s: s.states.get(model) in ("rolled-back", "champion"), 60)
    finally:
        stack.set_faults(None)
    assert state.states[model] == "rolled-back", state.reasons.get(model)
    reason = state.reasons[model]
    assert reason.startswith("canary failed 2 analyses at step 1/4 (10%)") and f"{failing}=" in reason, reason
    assert state.champion == champion
    rolled_back = when_state_began(stack, model, "rolled-back")
    # exactly two analyses: the first failure, then the rollback one interval later
    progress = [(s.canary.failures, s.canary.passes) for s, _ in events(stack, model) if s.canary]
    assert progress == [(0, 0), (1, 0)], f"start, one failure, rollback: {progress}"
    first_failure = [s.updated_at for s, _ in events(stack, model) if s.canary and s.canary.failures == 1]
    assert rolled_back - first_failure[0] <= ANALYSIS_SECONDS + 2 * POLL_SECONDS + SCRAPE_SECONDS + 1.0
    took = rolled_back - live
    # the first analysis also waits for MIN_REQUESTS canary requests (~2.5 s at the replay's rate)
    assert took <= 3 * ANALYSIS_SECONDS + 4.0, took
    champion_only_after(stack, rolled_back, champion_version)
    print(f"{role}: rolled back {took:.1f} s after the canary went live: {reason}")


def test_a_canary_wrong_on_the_delayed_labels_is_rolled_back_naming_accuracy(stack: Stack) -> None:
    """Same probabilities as the champion (the shift check sees nothing), every reading answered "not
    occupied": the replay client's labels, posted a second after each answer, give it away."""
    model = stack.models["wrong"]
    champion = stack.state().champion
    assert champion is not None
    champion_version = str(stack.state().versions[champion])
    submitted = time.time()
    version = str(stack.registry.submit(model, "gate: passed offline").versions[model])
    state = stack.wait_state("rollback", lambda s: s.states.get(model) in ("rolled-back", "champion"), 60)
    assert state.states[model] == "rolled-back", f"promoted: {state.reasons.get(model)}\n{stack.log_tail()}"
    reason = state.reasons[model]
    assert re.search(
        r"failed 2 analyses at step [12]/4 \(\d+%\): accuracy=0\.[2-4]\d* \(threshold ", reason
    ), reason
    figures = re.search(
        r"canary accuracy ([\d.]+)% \(\d+ labels\) vs champion ([\d.]+)% \(\d+ labels\)", reason
    )
    assert figures, reason
    # SEGMENT: 20 of 30 readings occupied; the champion says occupied to all, the canary to none
    # (each arm gets a random share of the readings: about 33 % right is expected, one make test run
    # gave 46.84 % on 99 labels against 70.00 %, so the check is the gap, not fixed bounds)
    assert float(figures[1]) + 15 < float(figures[2]), reason
    assert "shift=" not in reason, "the distribution looked right"
    assert champion == state.champion
    rolled_back = when_state_began(stack, model, "rolled-back")
    champion_only_after(stack, rolled_back, champion_version)

    # serving counted the labels per arm and version; the replay's feedback was accepted
    feedback = stack.prom_client.query(
        f'sum by (correct) (occupancy_serving_feedback_total{{arm="canary",model_version="{version}"}})'
    )
    counted = {labels["correct"]: value for labels, value in feedback}
    assert counted.get("false", 0) >= 2 * MIN_LABELS and counted.get("true", 0) > 0, counted
    assert set(stack.replay.stats.feedback) == {200}, stack.replay.stats.feedback
    metrics = stack.metrics()
    assert 'occupancy_canary_checks_total{check="accuracy",result="failed"}' in metrics
    # the report's figure: labeled accuracy per model version
    labeled = serving_series(stack.prom.url, submitted, time.time())["labeled"]
    # (the median: a point of the rolling series over the canary's first few labels can be above 0.5)
    canary_acc = statistics.median(v for v in labeled[f"v{version}"][1] if v == v)
    champion_acc = statistics.median(v for v in labeled[f"v{champion_version}"][1] if v == v)
    assert canary_acc < 0.5 < champion_acc, labeled
    print(f"wrong on labels: rolled back {rolled_back - submitted:.1f} s after submission: {reason}")


def test_manual_pause_resume_and_rollback_during_a_step(stack: Stack) -> None:
    model = stack.models["manual"]
    champion = stack.state().champion
    assert champion is not None
    champion_version = str(stack.state().versions[champion])
    args = ("--project", stack.project)
    missing = start_cli(stack, "canary", "once", "--project", "NoSuchProject")  # meanwhile
    stack.registry.submit(model, "gate: passed offline")
    stack.wait_state("the canary", lambda s: s.canary is not None and s.canary.model_id == model, 30)

    # at whichever step the pause lands (the CLI takes seconds on a busy machine): held there
    paused = cli(stack.env, "canary", "pause", "--reason", "looking at it", *args)
    assert paused.returncode == 0, paused.stderr
    held = stack.state().canary
    assert held is not None and held.paused and held.model_id == model
    assert held.step < 3, f"the pause came after the canary reached 100 %: {held}"
    assert f"paused at {held.weight:.0%}" in paused.stdout
    hold_until = time.monotonic() + 2 * ANALYSIS_SECONDS + POLL_SECONDS
    status = finish_cli(start_cli(stack, "canary", "status", *args))
    assert status.returncode == 0 and "PAUSED" in status.stdout, status.stdout + status.stderr
    time.sleep(max(0.0, hold_until - time.monotonic()))
    canary = stack.state().canary
    assert canary == held, "held: no analysis, no step, same weight"
    assert canary.last_reason == "manual: looking at it"

    resumed = cli(stack.env, "canary", "resume", "--reason", "fine", *args)
    assert resumed.returncode == 0, resumed.stderr
    stack.wait_state(
        "the next step",
        lambda s: s.canary is not None and s.canary.step > held.step and not s.canary.paused,
        30,
    )

    rolled = cli(stack.env, "canary", "rollback", "--reason", "wrong data", *args)
    assert rolled.returncode == 0, rolled.stderr
    state = stack.state()
    assert state.states[model] == "rolled-back" and state.reasons[model] == "manual: wrong data"
    assert state.canary is None and state.champion == champion
    rolled_at = time.time()
    # one pass by hand beside the running controller (nothing left to do), a refused rollback, JSON
    once = start_cli(
        stack, "canary", "once", *args, "--service-id", stack.service_id, "--prometheus-url", stack.prom.url
    )
    again = start_cli(stack, "canary", "rollback", "--reason", "twice", *args)
    as_json = start_cli(stack, "canary", "status", "--json", *args)
    champion_only_after(stack, rolled_at, champion_version)
    wait_answers(
        stack,
        "the controller to count the manual rollback",
        lambda _: 'occupancy_canary_rollbacks_total{cause="manual"} 1.0' in stack.metrics(),
        rolled_at,
        10,
    )
    done = finish_cli(once)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["champion"], result["canary"], result["decisions"]) == (champion, None, [])
    refused = finish_cli(again)
    assert refused.returncode == 1 and "no canary is running" in refused.stderr
    assert RegistryState.from_json(finish_cli(as_json).stdout).states[model] == "rolled-back"
    no_service = finish_cli(missing)
    assert no_service.returncode == 2 and "no serving service 'occupancy-serving'" in no_service.stderr


def test_manual_promotion_during_a_step(stack: Stack) -> None:
    model = stack.models["promote"]
    before = stack.state()
    version = str(stack.registry.submit(model, "gate: passed offline").versions[model])
    stack.wait_state("the canary", lambda s: s.canary is not None and s.canary.model_id == model, 30)
    promoted = cli(stack.env, "canary", "promote", "--reason", "urgent fix", "--project", stack.project)
    assert promoted.returncode == 0, promoted.stderr
    assert f"model {model} (version {version}) is champion: manual: urgent fix" in promoted.stdout
    state = stack.state()
    assert state.champion == model and state.former[0] == before.champion
    champion_only_after(stack, when_state_began(stack, model, "champion"), version)
    refused = cli(
        stack.env,
        "canary",
        "promote",
        "--reason",
        "again",
        "--model",
        before.champion,
        "--project",
        stack.project,
    )
    assert refused.returncode == 1 and "only the canary can be promoted" in refused.stderr, refused.stderr


def test_without_prometheus_nothing_is_decided_and_the_controller_says_why(stack: Stack) -> None:
    model = stack.models["blind"]
    stack.kill_controller()
    stack.registry.submit(model, "gate: passed offline")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = stack.settings(prometheus_url=dead)
    with canary_process(stack.env, settings, stack.home / "canary-blind.log") as blind:
        state = stack.wait_state(
            "the canary", lambda s: s.canary is not None and s.canary.model_id == model, 30
        )
        assert state.canary is not None
        started = state.canary.started_at
        due = started + settings["serving_settle_seconds"] + ANALYSIS_SECONDS

        def counted() -> bool:
            text = requests.get(blind.url + "/metrics", timeout=10).text
            return 'occupancy_canary_failures_total{stage="prometheus"}' in text

        wait_answers(stack, "a failed Prometheus query", lambda _: counted(), started, 30)
        assert time.time() >= due
        ready = requests.get(blind.url + "/readyz", timeout=10)
        assert ready.status_code == 200, "it still reads the registry and keeps serving in line"
        assert "prometheus" in ready.json()["last_error"] and dead in ready.json()["last_error"]
        canary = stack.state().canary
        assert canary is not None and (canary.step, canary.passes, canary.failures) == (0, 0, 0), canary
    stack.start_controller()  # with Prometheus back, the rollout goes on from where it is
    stack.wait_state("the next step", lambda s: s.canary is not None and s.canary.step >= 1, 30)


def test_controller_sigkilled_in_every_state_resumes_where_it_was(stack: Stack) -> None:
    model = stack.models["restart"]

    # 1. a candidate waits while no controller runs: nothing happens until one starts
    stack.kill_controller()
    version = str(stack.registry.submit(model, "gate: passed offline").versions[model])
    time.sleep(1.0)
    assert stack.state().states[model] == "candidate"
    stack.start_controller()
    # 2. killed right after it made the canary (serving possibly not yet told): the next one serves it
    stack.wait_state("the canary", lambda s: s.canary is not None and s.canary.model_id == model, 30)
    stack.kill_controller()
    restarted = time.time()
    stack.start_controller()
    wait_answers(
        stack,
        "the canary served after a restart",
        lambda xs: any(a.arm == "canary" and a.model_version == version for a in xs),
        restarted,
        20,
    )
    # 3. killed in the middle of a step: the new controller keeps the step's clock from the registry
    step1 = stack.wait_state("step 2", lambda s: s.canary is not None and s.canary.step == 1, 30)
    time.sleep(ANALYSIS_SECONDS / 2)
    stack.kill_controller()
    stack.start_controller()
    # 4. killed between steps: as soon as the registry says step 3, before serving may have followed
    step2 = stack.wait_state("step 3", lambda s: s.canary is not None and s.canary.step == 2, 30)
    assert step2.canary is not None and step1.canary is not None
    stack.kill_controller()
    # 5. and from here on a second controller by mistake, both judging the same steps at once
    with canary_process(stack.env, stack.settings(), stack.home / "canary-second.log") as second:
        stack.start_controller()
        state = stack.wait_state(
            "the end of the rollout",
            lambda s: s.champion == model or s.states.get(model) == "rolled-back",
            60,
        )
        assert second.process.poll() is None
    assert state.champion == model, state.reasons.get(model)
    assert canary_steps(stack, model) == [(0, 0.10), (1, 0.25), (2, 0.50), (3, 1.00)], "each step once"
    reasons = [r for _, r in events(stack, model)]
    assert sum(r.startswith(f"start canary {model}") for r in reasons) == 1, reasons
    assert sum(r.startswith(f"promote {model}") for r in reasons) == 1, reasons
    assert not state.problems()
    champion_only_after(stack, when_state_began(stack, model, "champion"), version)
