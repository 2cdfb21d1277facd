"""Scheduler configuration: YAML file, environment overrides, and errors that name the key."""

from __future__ import annotations

import pytest

from services.scheduler.settings import ConfigError, load_settings


def test_defaults_then_file_then_environment(tmp_path):
    assert load_settings(environ={}).tags == ["Production"]
    assert load_settings(environ={}).poll_interval_seconds == 3.0
    path = tmp_path / "scheduler.yaml"
    path.write_text("project: Rooms\ntags: [Production, checked]\npoll_interval_seconds: 2\n")
    settings = load_settings(path, environ={"OCCUPANCY_SCHEDULER_POLL_INTERVAL_SECONDS": "0.5"})
    assert settings.project == "Rooms"
    assert settings.tags == ["Production", "checked"]
    assert settings.poll_interval_seconds == 0.5, "the environment wins over the file"
    env = {
        "OCCUPANCY_SCHEDULER_CONFIG": str(path),
        "OCCUPANCY_SCHEDULER_TAGS": "gold, reviewed",
        "OCCUPANCY_SCHEDULER_PARAMETERS": '{"Args/eval_dataset_id": "abc"}',
    }
    settings = load_settings(environ=env)
    assert settings.project == "Rooms", "the file is found through OCCUPANCY_SCHEDULER_CONFIG"
    assert settings.tags == ["gold", "reviewed"]
    assert settings.parameters == {"Args/eval_dataset_id": "abc"}


@pytest.mark.parametrize(
    ("text", "env", "named"),
    [
        ("poll_interval_seconds: -3\n", {}, "poll_interval_seconds"),
        ("pol_interval_seconds: 3\n", {}, "pol_interval_seconds: unknown setting"),
        ("tags: []\n", {}, "tags"),
        ("dataset_parameter: dataset_id\n", {}, "dataset_parameter"),
        ("- a list\n", {}, "must hold a mapping"),
        ("project: [unclosed\n", {}, "not valid YAML"),
        ("", {"OCCUPANCY_SCHEDULER_QUEUES": "x"}, "OCCUPANCY_SCHEDULER_QUEUES: unknown setting 'queues'"),
        ("", {"OCCUPANCY_SCHEDULER_PORT": "eighty"}, "port"),
        (
            "",
            {"OCCUPANCY_SCHEDULER_PARAMETERS": "{nope"},
            "OCCUPANCY_SCHEDULER_PARAMETERS: not a JSON object",
        ),
    ],
)
def test_bad_configuration_names_the_key(tmp_path, text, env, named):
    path = tmp_path / "scheduler.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ=env)
    assert named in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", environ={})
