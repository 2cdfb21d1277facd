"""Bad autoscaler settings exit 2 with one line naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.autoscaler.settings import ConfigError, load_settings

CLI = str(Path(sys.executable).parent / "occupancy-mlops")


@pytest.mark.parametrize(
    ("yaml_text", "names"),
    [
        (
            "pools: [{queue: q, deployment: d, min_replicas: 3, max_replicas: 2}]",
            "min_replicas 3 is above max_replicas 2",
        ),
        ("pools: [{queue: q, deployment: Bad_Name}]", "deployment"),
        (
            "pools: [{queue: q, deployment: a}, {queue: q, deployment: b}]",
            "queue q appears in more than one pool",
        ),
        ("pools: [{queue: q, deployment: a, tasks_per_replica: 0}]", "tasks_per_replica"),
        ("poll_interval_seconds: .inf", "poll_interval_seconds"),
        ("scale_down_cooldown_seconds: -1", "scale_down_cooldown_seconds"),
        ("pools: [{queue: q, deployment: a, replicas: 2}]", "replicas"),
        ("namespaces: x", "namespaces"),
    ],
)
def test_bad_settings_name_the_key(tmp_path, yaml_text, names):
    path = tmp_path / "autoscaler.yaml"
    path.write_text(yaml_text + "\n")
    with pytest.raises(ConfigError, match=names.replace("(", r"\(").replace(")", r"\)")):
        load_settings(path)


def test_the_command_exits_2_with_one_line(tmp_path):
    path = tmp_path / "autoscaler.yaml"
    path.write_text("pools: [{queue: q, deployment: a, min_replicas: 5, max_replicas: 1}]\n")
    proc = subprocess.run(
        [CLI, "autoscaler", "once", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error:") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
