"""Canary controller configuration: YAML file, environment overrides, and errors that name the key."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.canary.settings import ConfigError, load_settings


def test_defaults_then_file_then_environment(tmp_path):
    defaults = load_settings(environ={})
    assert defaults.steps == [0.10, 0.25, 0.50, 1.00]
    assert (defaults.poll_interval_seconds, defaults.analysis_interval_seconds) == (2.0, 30.0)
    assert (defaults.passes_per_step, defaults.failure_threshold) == (1, 2)
    assert (defaults.max_shift, defaults.max_error_ratio) == (0.1, 0.05)
    assert (defaults.min_labels, defaults.max_accuracy_drop, defaults.accuracy_alpha) == (50, 0.02, 0.001)
    path = tmp_path / "canary.yaml"
    path.write_text("project: Rooms\nsteps: [0.2, 1.0]\nanalysis_interval_seconds: 10\nmax_shift: 0.3\n")
    settings = load_settings(path, environ={"OCCUPANCY_CANARY_ANALYSIS_INTERVAL_SECONDS": "3"})
    assert settings.project == "Rooms"
    assert settings.steps == [0.2, 1.0]
    assert settings.analysis_interval_seconds == 3.0, "the environment wins over the file"
    env = {"OCCUPANCY_CANARY_CONFIG": str(path), "OCCUPANCY_CANARY_STEPS": "0.05, 0.5,1"}
    settings = load_settings(environ=env)
    assert settings.max_shift == 0.3, "the file is found through OCCUPANCY_CANARY_CONFIG"
    assert settings.steps == [0.05, 0.5, 1.0]
    assert load_settings(path, environ={}, port=0).port == 0, "explicit overrides win"


@pytest.mark.parametrize(
    ("text", "env", "named"),
    [
        ("poll_interval_seconds: -3\n", {}, "poll_interval_seconds"),
        ("max_pis: 0.3\n", {}, "max_pis: unknown setting"),
        ("steps: []\n", {}, "steps"),
        ("steps: [0.5, 0.25]\n", {}, "strictly increasing"),
        ("steps: [0.5, 1.5]\n", {}, "(0, 1]"),
        ("steps: [0, 1]\n", {}, "(0, 1]"),
        ("failure_threshold: 0\n", {}, "failure_threshold"),
        ("prometheus_url: localhost:9090\n", {}, "prometheus_url"),
        ("- a list\n", {}, "must hold a mapping"),
        ("project: [unclosed\n", {}, "not valid YAML"),
        ("", {"OCCUPANCY_CANARY_STEP": "0.1"}, "OCCUPANCY_CANARY_STEP: unknown setting 'step'"),
        ("", {"OCCUPANCY_CANARY_PORT": "eighty"}, "port"),
        ("", {"OCCUPANCY_CANARY_MAX_SHIFT": "2"}, "max_shift"),
        ("max_psi: 0.2\n", {}, "max_psi: replaced by max_shift"),
        ("max_ks: 0.1\nmax_psi: 0.2\n", {}, "max_psi, max_ks: replaced by max_shift"),
        ("min_labels: 0\n", {}, "min_labels"),
        ("max_accuracy_drop: -0.01\n", {}, "max_accuracy_drop"),
        ("max_accuracy_drop: 1.5\n", {}, "max_accuracy_drop"),
        ("accuracy_alpha: 0\n", {}, "accuracy_alpha"),
        ("accuracy_alpha: 0.5\n", {}, "accuracy_alpha"),
        ("", {"OCCUPANCY_CANARY_MIN_LABELS": "many"}, "min_labels"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path, text, env, named):
    path = tmp_path / "canary.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ=env)
    assert named in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", environ={})


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OCCUPANCY_CANARY_MAX_PIS": "0.3"}, "OCCUPANCY_CANARY_MAX_PIS: unknown setting 'max_pis'"),
        ({"OCCUPANCY_CANARY_STEPS": "0.5,0.2"}, "steps: Value error, steps must be strictly increasing"),
    ],
)
def test_the_service_stops_at_start_naming_the_key(env, named):
    """``python -m services.canary run`` with a bad setting: exit 2 before touching any server."""
    proc = subprocess.run(
        [sys.executable, "-m", "services.canary", "run"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert named in proc.stderr
