"""Benchmark of the local ClearML server (``make bench-server``).

1. ``tasks.get_all`` with a tag filter over 10,000 tasks: requests/s and latency percentiles.
2. Wall time of the dataset flow (create, add 100 files, finalize with upload, fresh-cache copy).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import requests
from tqdm import tqdm

from local_server import LocalServer, local_server
from occupancy_mlops.client_env import client_env

N_TASKS = 10_000
N_QUERIES = 300
TARGET_MS = 50.0


def _session(base: str, key: str, secret: str) -> requests.Session:
    session = requests.Session()
    token = session.get(f"{base}/auth.login", auth=(key, secret), timeout=10).json()["data"]["token"]
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def bench_get_all(base: str, session: requests.Session) -> dict[str, float]:
    project = session.post(f"{base}/projects.create", json={"name": "Bench"}).json()["data"]["id"]
    for i in tqdm(range(N_TASKS), desc="creating tasks", unit="task"):
        tags = ["Production"] if i % 100 == 0 else ["Staging"]
        session.post(
            f"{base}/tasks.create",
            json={
                "name": f"train-{i}",
                "type": "training",
                "project": project,
                "tags": tags,
                "hyperparams": {"General": {"CLEARML_DATASET_ID": {"value": f"ds-{i}"}}},
            },
        ).raise_for_status()
    query = {
        "project": [project],
        "tags": ["Production"],
        "system_tags": ["-archived"],
        "order_by": ["-last_update"],
        "only_fields": ["id", "name", "last_update", "tags"],
    }
    first = session.post(f"{base}/tasks.get_all", json=query).json()["data"]["tasks"]
    assert len(first) == N_TASKS // 100, len(first)
    latencies = []
    started = time.perf_counter()
    for _ in range(N_QUERIES):
        t0 = time.perf_counter()
        session.post(f"{base}/tasks.get_all", json=query).raise_for_status()
        latencies.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": N_QUERIES / elapsed,
        "p50": statistics.median(latencies),
        "p95": latencies[int(0.95 * len(latencies)) - 1],
        "max": latencies[-1],
        "matched": len(first),
    }


FLOW = """
import time
from pathlib import Path
from clearml import Dataset
folder = Path("files"); folder.mkdir()
for i in range(100):
    row = f"2015-02-04 10:{i % 60:02d},{i},1\\n"
    (folder / f"part-{i:03d}.csv").write_text("date,Light,Occupancy\\n" + row * 200)
t0 = time.perf_counter()
ds = Dataset.get(dataset_project="BenchFlow", dataset_name="sensors", auto_create=True, writable_copy=True)
ds.add_files(path=str(folder))
ds.finalize(auto_upload=True)
t1 = time.perf_counter()
Dataset.get(dataset_id=ds.id).get_local_copy()
t2 = time.perf_counter()
print(f"{t1 - t0:.2f} {t2 - t1:.2f}")
"""


def bench_dataset_flow(srv_dir: Path, srv: LocalServer) -> tuple[float, float]:
    env = client_env(srv.env, srv_dir / "client")
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FLOW)],
        env=env,
        cwd=env["HOME"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    create_s, copy_s = (float(x) for x in out.strip().splitlines()[-1].split())
    return create_s, copy_s


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, local_server(Path(tmp) / "server") as srv:
        s = srv.settings
        stats = bench_get_all(s.base_url, _session(s.base_url, s.access_key, s.secret_key))
        create_s, copy_s = bench_dataset_flow(Path(tmp), srv)
    verdict = "PASS" if stats["p95"] < TARGET_MS else "FAIL"
    print()
    print(
        f"tasks.get_all, tag filter, {N_TASKS:,} tasks ({stats['matched']:.0f} match), {N_QUERIES} queries:"
    )
    print(
        f"  {stats['rps']:.0f} req/s   p50 {stats['p50']:.1f} ms   p95 {stats['p95']:.1f} ms   "
        f"max {stats['max']:.1f} ms   target p95 < {TARGET_MS:.0f} ms: {verdict}"
    )
    print("dataset flow, 100 files:")
    print(
        f"  create + add_files + finalize(upload) {create_s:.2f} s   "
        f"get_local_copy (fresh cache) {copy_s:.2f} s"
    )
    if verdict == "FAIL":
        sys.exit(1)


if __name__ == "__main__":
    main()
