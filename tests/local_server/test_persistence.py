"""State survives restarts and concurrent writers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import requests

from local_server import local_server
from tests.conftest import client_env

MID_FLOW = """
import json, time
from pathlib import Path
from clearml import Dataset

folder = Path("labeled"); folder.mkdir()
for i in range(3):
    (folder / f"f{i}.csv").write_text(f"x\\n{i}\\n")
ds = Dataset.get(dataset_project="Restart", dataset_name="sensors", auto_create=True, writable_copy=True)
ds.add_files(path=str(folder))
Path("ready").write_text(ds.id)
while not Path("go").exists():          # the test kills and restarts the server meanwhile
    time.sleep(0.1)
ds.finalize(auto_upload=True)
copy = Dataset.get(dataset_id=ds.id).get_local_copy()
print(json.dumps({"id": ds.id, "files": sorted(p.name for p in Path(copy).iterdir())}))
"""


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"flow exited early:\n{proc.communicate()[1]}")
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.1)


def test_server_killed_mid_flow_then_flow_completes(tmp_path):
    with local_server(tmp_path / "server") as srv:
        env = client_env(srv, tmp_path / "client")
        home = Path(env["HOME"])
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(MID_FLOW)],
            env=env,
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_for(home / "ready", proc)
            srv.kill()  # SIGKILL: no chance to flush anything
            srv.start()
            (home / "go").write_text("")
            out, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err[-4000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["files"] == ["f0.csv", "f1.csv", "f2.csv"]
        assert result["id"] == (home / "ready").read_text()

        srv.restart()
        token = requests.get(
            f"{srv.settings.base_url}/auth.login",
            auth=(srv.settings.access_key, srv.settings.secret_key),
            timeout=10,
        ).json()
        task = requests.post(
            f"{srv.settings.base_url}/tasks.get_by_id",
            json={"task": result["id"]},
            headers={"Authorization": f"Bearer {token['data']['token']}"},
            timeout=10,
        )
        assert task.json()["data"]["task"]["status"] == "completed", "a finalized version survives a restart"


def _writer(base: str, key: str, secret: str, worker: int, count: int) -> list[str]:
    session = requests.Session()
    token = session.get(f"{base}/auth.login", auth=(key, secret), timeout=10).json()["data"]["token"]
    session.headers["Authorization"] = f"Bearer {token}"
    ids = []
    for i in range(count):
        res = session.post(
            f"{base}/tasks.create",
            json={"name": f"w{worker}-{i}", "type": "training", "tags": [f"w{worker}"]},
            timeout=30,
        )
        task = res.json()["data"]["id"]
        session.post(
            f"{base}/tasks.edit_hyper_params",
            timeout=30,
            json={"task": task, "hyperparams": [{"section": "General", "name": "i", "value": str(i)}]},
        )
        ids.append(task)
    return ids


def test_four_concurrent_writers_lose_nothing(tmp_path):
    with local_server(tmp_path / "server") as srv:
        s = srv.settings
        with ProcessPoolExecutor(4) as pool:
            futures = [pool.submit(_writer, s.base_url, s.access_key, s.secret_key, w, 50) for w in range(4)]
            written = [f.result() for f in futures]
        srv.restart()
        session = requests.Session()
        token = session.get(f"{s.base_url}/auth.login", auth=(s.access_key, s.secret_key), timeout=10)
        session.headers["Authorization"] = f"Bearer {token.json()['data']['token']}"
        for worker, ids in enumerate(written):
            tasks = session.post(
                f"{s.base_url}/tasks.get_all",
                timeout=30,
                json={"tags": [f"w{worker}"], "only_fields": ["id", "hyperparams"]},
            ).json()["data"]["tasks"]
            assert sorted(t["id"] for t in tasks) == sorted(ids)
            values = sorted(int(t["hyperparams"]["General"]["i"]["value"]) for t in tasks)
            assert values == list(range(50))
