"""A first-time user's hands: no server configured, no data, a work folder of their own, Ctrl-C or
SIGTERM on a running demo. Every case ends in one clear line, and nothing of the user's is lost."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from training import data as data_module
from training.data import DataNotFoundError, locate_occupancy_data

CLI = str(Path(sys.executable).parent / "occupancy-mlops")


def _bare_env(home: Path) -> dict[str, str]:
    """A shell with no ClearML configuration at all (no clearml.conf, no CLEARML_* variables)."""
    return {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8", "COLUMNS": "200"}


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=env, cwd=env["HOME"], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    "args",
    [
        ("timeline",),
        ("label", "sync", "{labeled}", "--project", "P", "--dataset", "D"),
        ("train", "--dataset-id", "0123456789abcdef"),
        ("scheduler", "once", "--project", "P"),
    ],
    ids=["timeline", "label-sync", "tracked-train", "scheduler-once"],
)
def test_no_server_configured_is_one_line_naming_the_local_server(tmp_path, occupancy_dir, args):
    labeled = tmp_path / "labeled"
    labeled.mkdir()
    (labeled / "datatest.txt").write_bytes((occupancy_dir / "datatest.txt").read_bytes())
    proc = _cli(_bare_env(tmp_path), *(a.format(labeled=labeled) for a in args))
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: no ClearML server configured")
    assert "occupancy-mlops local-server" in lines[0] and "CLEARML_API_HOST" in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr and "free account" not in proc.stdout + proc.stderr


def test_demo_never_deletes_a_folder_it_did_not_make(tmp_path):
    mine = tmp_path / "my-project"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    proc = _cli(_bare_env(tmp_path), "demo", "--workdir", str(mine))
    assert proc.returncode == 2
    assert "holds files the demo did not make" in proc.stderr and "choose another --workdir" in proc.stderr
    assert (mine / "notes.txt").read_text() == "mine" and sorted(p.name for p in mine.iterdir()) == [
        "notes.txt"
    ]

    a_file = tmp_path / "file"
    a_file.write_text("x")
    proc = _cli(_bare_env(tmp_path), "demo", "--workdir", str(a_file))
    assert proc.returncode == 2 and "is not a folder" in proc.stderr and a_file.read_text() == "x"


def test_a_missing_data_folder_names_where_it_looked(tmp_path, monkeypatch):
    proc = _cli(
        _bare_env(tmp_path), "demo", "--workdir", str(tmp_path / "w"), "--data", str(tmp_path / "nowhere")
    )
    assert proc.returncode == 2
    assert f"--data {tmp_path / 'nowhere'} (does not exist)" in proc.stderr
    assert "Invalid value" not in proc.stderr and not (tmp_path / "w").exists()

    monkeypatch.setenv("OCCUPANCY_DATA", str(tmp_path))
    with pytest.raises(
        DataNotFoundError, match=rf"\$OCCUPANCY_DATA {tmp_path} \(holds no datatraining.txt\)"
    ):
        locate_occupancy_data()


def test_a_failed_download_names_every_place_and_the_download(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "UCI_ZIP_URL", "http://127.0.0.1:9/occupancy.zip")  # refused at once
    with pytest.raises(DataNotFoundError) as err:
        data_module._download(tmp_path / "cache", ["$OCCUPANCY_DATA (not set)", "cache x (does not exist)"])
    text = str(err.value)
    assert "$OCCUPANCY_DATA (not set); cache x (does not exist)" in text
    assert (
        "the download from http://127.0.0.1:9/occupancy.zip failed" in text and "make demo DATA=DIR" in text
    )
    assert not list((tmp_path / "cache").glob("*.part")), "no half-downloaded file is left"
    assert data_module.DOWNLOAD_TIMEOUT_SECONDS <= 60


def test_sigterm_on_a_running_demo_stops_every_process_it_started(tmp_path, occupancy_dir):
    env = {**_bare_env(tmp_path), "OCCUPANCY_DATA": str(occupancy_dir)}
    proc = subprocess.Popen(
        [CLI, "demo", "--workdir", str(tmp_path / "demo")],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    demo = psutil.Process(proc.pid)
    started: dict[int, str] = {}
    deadline = time.monotonic() + 240
    try:
        # wait until the server and an agent (with the pipeline it runs) are up
        while time.monotonic() < deadline and proc.poll() is None:
            for child in demo.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    started.setdefault(child.pid, " ".join(child.cmdline())[:200])
            if (
                any("clearml_agent" in c or "clearml-agent" in c for c in started.values())
                and len(started) >= 3
            ):
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
        assert any("clearml" in c and "agent" in c for c in started.values()), started
        time.sleep(2)
        for child in demo.children(recursive=True):  # whatever else started meanwhile
            started.setdefault(child.pid, "")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out[-2000:], err[-2000:])
    assert "every process it started was stopped" in err
    time.sleep(1)
    alive = {
        pid: cmd
        for pid, cmd in started.items()
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    }
    for pid in alive:  # do not leave them to the next test either
        os.kill(pid, signal.SIGKILL)
    assert not alive, alive
