"""Driving ``occupancy-mlops label`` as a user would, and reading the versions back from the server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import api_client, run_python

CLI = str(Path(sys.executable).parent / "occupancy-mlops")


def drop_done(src: Path, folder: Path) -> Path:
    """What a labeling tool does when the annotator marks a file done: write aside, rename."""
    part = folder / f"{src.name}.part"
    shutil.copyfile(src, part)
    final = folder / src.name
    os.rename(part, final)
    return final


def label(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "label", *args],
        env={**env, "COLUMNS": "200"},
        cwd=env["HOME"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Watch:
    """``occupancy-mlops label watch`` as a child process, its stdout read line by line."""

    def __init__(self, env: dict[str, str], folder: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [CLI, "label", "watch", str(folder), "--poll-seconds", "0.2", "--no-progress", *args],
            env=env,
            cwd=env["HOME"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stderr = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if text in line:
                    return line
            if self.proc.poll() is not None:
                self._reader.join(5)
                if any(text in line for line in self.lines):
                    continue
                raise AssertionError(
                    f"watch exited ({self.proc.returncode}) before {text!r}:\n{self._dump()}"
                )
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} within {timeout}s:\n{self._dump()}")

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout: float = 60) -> int:
        self.proc.send_signal(sig)
        return self.finish(timeout)

    def finish(self, timeout: float = 60) -> int:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"watch did not stop within {timeout}s:\n{self._dump()}") from None
        self._reader.join(10)
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()
        return self.proc.returncode

    def _dump(self) -> str:
        return self.output[-4000:] + "\n--- stderr ---\n" + (self.stderr or "")[-4000:]


VERSIONS = """
import json
from clearml import Dataset, Task
out = []
for d in Dataset.list_datasets(dataset_project={project!r}, partial_name={name!r}, only_completed=False):
    if d["name"] != {name!r}:
        continue
    task = Task.get_task(task_id=d["id"])
    item = {{"id": d["id"], "status": str(task.status), "tags": sorted(task.get_tags() or []),
             "created": str(d["created"])}}
    if item["status"] == "completed":
        ds = Dataset.get(dataset_id=d["id"])
        item["files"] = sorted(ds.list_files())
        item["parents"] = ds.get_dependency_graph().get(ds.id) or []
    out.append(item)
print(json.dumps(sorted(out, key=lambda i: i["created"])))
"""


def versions(env: dict[str, str], project: str, name: str) -> list[dict]:
    """Every version of ``project/name`` on the server (finalized or not), oldest first."""
    out = run_python(VERSIONS.format(project=project, name=name), env)
    return json.loads(out.strip().splitlines()[-1])


def dataset_tasks(env: dict[str, str], name: str) -> list:
    """Every dataset task (any status) named ``name``, straight from the API."""
    return api_client(env).tasks.get_all(
        name=f"^{name}$", system_tags=["dataset"], search_hidden=True, only_fields=["id", "status"]
    )


def plots(env: dict[str, str], task_id: str) -> dict[str, set[str]]:
    """metric → variants of the plots logged on a version."""
    data = (
        api_client(env)
        .session.send_request("events", "get_task_plots", json={"task": task_id})
        .json()["data"]["plots"]
    )
    found: dict[str, set[str]] = {}
    for plot in data:
        found.setdefault(plot["metric"], set()).add(plot["variant"])
    return found
