"""The e2e workflow's smoke steps: the demo's steps against a real ClearML server and our chart in a
kind cluster, with the chart's scheduler, agent pools, canary controller and serving doing the work
that the demo's own processes do on the local server.

    python .github/e2e/smoke.py prepare
        the queues of the agent pools and the evaluation set (datatest.txt) as the dataset
        Occupancy/room-sensors-eval; prints its id (the chart's scheduler passes it to every run)
    python .github/e2e/smoke.py round --serve-url http://127.0.0.1:18080 --timeout 1500
        the training week's first days as one labeling round tagged Production, then waits until a
        model trained on it is the registry's champion (scheduler → services pool → training pool →
        gate) and serving answers real readings with that model

The ClearML client settings come from the environment (CLEARML_API_HOST, CLEARML_FILES_HOST, the
keys); the data from ../shared/data/occupancy, $OCCUPANCY_DATA or the UCI download
(training/data.py). Exits 1 with the reason when a step does not happen in time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PROJECT = "Occupancy"
DATASET = "room-sensors"
EVAL_DATASET = "room-sensors-eval"
QUEUES = ("services", "training")
PRODUCTION = "Production"


def prepare(workdir: Path) -> str:
    from clearml.backend_api.session.client import APIClient

    from services.labeling.sync import sync_folder
    from training.data import locate_occupancy_data

    api = APIClient()
    for queue in QUEUES:
        if not api.queues.get_all(name=f"^{queue}$"):
            api.queues.create(name=queue)
    evaluation = workdir / "evaluation"
    evaluation.mkdir(parents=True, exist_ok=True)
    shutil.copy2(locate_occupancy_data() / "datatest.txt", evaluation / "datatest.txt")
    return sync_folder(evaluation, PROJECT, EVAL_DATASET, tags=["evaluation"]).dataset_id


def one_round(workdir: Path, serve_url: str, days: int, timeout: float) -> dict[str, Any]:
    import requests

    from occupancy_mlops.replay import reading_payload
    from services.labeling.sync import sync_folder
    from training.data import load_occupancy_file, locate_occupancy_data, split_by_day
    from training.registry import ModelRegistry

    source = locate_occupancy_data()
    labeled = workdir / "labeled"
    labeled.mkdir(parents=True, exist_ok=True)
    for day_file in split_by_day(load_occupancy_file(source / "datatraining.txt"), workdir / "daily")[:days]:
        shutil.copyfile(day_file, labeled / day_file.name)
    started = time.monotonic()
    version = sync_folder(labeled, PROJECT, DATASET, tags=[PRODUCTION]).dataset_id
    print(f"dataset version {version} tagged {PRODUCTION}", flush=True)

    registry = ModelRegistry(PROJECT)
    champion = None
    deadline = started + timeout
    while champion is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no champion {timeout:.0f} s after the version was finalized")
        time.sleep(10)
        champion = registry.read().champion
    print(f"champion {champion} after {time.monotonic() - started:.0f} s", flush=True)

    frame = load_occupancy_file(source / "datatest.txt")
    body = reading_payload(frame.head(61))
    last = ""
    while time.monotonic() < deadline:
        try:
            resp = requests.post(f"{serve_url}/serve/occupancy", json=body, timeout=10)
            is_json = resp.headers.get("content-type", "").startswith("application/json")
            answer = resp.json() if is_json else {}
            if resp.status_code == 200 and answer.get("model", {}).get("id") == champion:
                print(f"serving answered with the champion after {time.monotonic() - started:.0f} s")
                return {"dataset_version": version, "champion": champion, "answer": answer}
            last = f"{resp.status_code} {resp.text[:300]}"
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(3)
    raise TimeoutError(f"serving did not answer with the champion {champion} in time (last: {last})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    steps.add_parser("prepare", help="queues and the evaluation dataset; prints its id")
    round_ = steps.add_parser("round", help="one Production version → champion → served")
    round_.add_argument("--serve-url", required=True, help="base URL of the serving Service")
    round_.add_argument("--days", type=int, default=3, help="days of the training week in the round")
    round_.add_argument("--timeout", type=float, default=1500, help="seconds for the whole round")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="occupancy-e2e-") as tmp:
        try:
            if args.step == "prepare":
                print(prepare(Path(tmp)))
            else:
                result = one_round(Path(tmp), args.serve_url.rstrip("/"), args.days, args.timeout)
                print(json.dumps(result, indent=2))
        except TimeoutError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
