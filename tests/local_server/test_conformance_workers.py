"""workers.*: the real ClearML server's behaviour (issue 12), pinned call by call.

Written from clearml-server's documented behaviour (``apiserver/schema/services/workers.conf`` and
its API tests): ``get_all`` filters by tags and system tags (``-tag`` excludes), ``last_seen`` and
timeouts, and the machine statistics of status reports feed ``get_metric_keys``, ``get_stats`` and
``get_activity_report``.
"""

from __future__ import annotations

import time
import uuid

import pytest

from local_server import LocalServer
from tests.local_server.helpers import Api


@pytest.fixture(scope="module")
def api(server: LocalServer) -> Api:
    return Api(server)


def _worker() -> str:
    return f"test_{uuid.uuid4().hex}"


def _ids(api: Api, **query: object) -> set[str]:
    return {w["id"] for w in api.ok("workers.get_all", query)["workers"]}


def test_get_all_filters_by_tags_and_system_tags(api: Api) -> None:
    worker, tag, system_tag = _worker(), uuid.uuid4().hex, uuid.uuid4().hex
    other = _worker()
    api.ok("workers.register", {"worker": worker, "tags": [tag, "application"], "system_tags": [system_tag]})
    api.ok("workers.register", {"worker": other})
    assert _ids(api, tags=[tag], system_tags=[system_tag]) == {worker}
    assert _ids(api, tags=[tag], system_tags=[f"-{system_tag}"]) == set()
    assert worker in _ids(api, tags=["application", "no-such-tag"]), "any of the included tags"
    assert worker not in _ids(api, tags=["-application"]) and other in _ids(api, tags=["-application"])
    assert api.ok("workers.get_count", {"system_tags": [system_tag]})["count"] == 1
    api.ok("workers.unregister", {"worker": worker})
    assert worker not in _ids(api)


def test_a_worker_disappears_after_its_timeout(api: Api) -> None:
    worker = _worker()
    api.ok("workers.register", {"worker": worker, "timeout": 1})
    assert worker in _ids(api, last_seen=100)
    time.sleep(1.5)
    assert worker not in _ids(api)


def _simulate(api: Api, start: int) -> tuple[str, str, str]:
    """Two workers report every minute: the first 4 times while running a task, the second twice."""
    task = api.ok("tasks.create", {"name": "worker task", "type": "testing"})["id"]
    api.ok("tasks.started", {"task": task})
    busy, idle = _worker(), _worker()
    stats = {
        busy: {"cpu_usage": [10, 20], "memory_used": 50, "gpu_usage": [60, 70]},
        idle: {"cpu_usage": [5], "memory_used": 30, "gpu_usage": [40]},
    }
    for step in range(4):
        for worker in (busy, idle) if step < 2 else (busy,):
            report = {
                "worker": worker,
                "timestamp": (start + 60 * step) * 1000,
                "machine_stats": stats[worker],
            }
            if worker == busy:
                report["task"] = task
            api.ok("workers.status_report", report)
    return busy, idle, task


def test_machine_statistics_feed_keys_stats_and_activity(api: Api) -> None:
    start = int(time.time())
    busy, idle, _ = _simulate(api, start)

    keys = api.ok("workers.get_metric_keys", {"worker_ids": [busy, idle]})["categories"]
    assert {c["name"]: c["metric_keys"] for c in keys} == {
        "cpu": ["cpu_usage"],
        "gpu": ["gpu_usage"],
        "memory": ["memory_used"],
    }
    meta = api.call("workers.get_metric_keys", {"worker_ids": ["no such worker"]}).json()["meta"]
    assert (meta["result_code"], meta["result_subcode"]) == (400, 1005)

    items = [
        {"key": "cpu_usage", "aggregation": "avg"},
        {"key": "cpu_usage", "aggregation": "max"},
        {"key": "memory_used", "aggregation": "max"},
    ]
    window = {"from_date": start, "to_date": start + 400, "interval": 1}
    res = api.ok("workers.get_stats", {"items": items, "worker_ids": [busy, idle], **window})["workers"]
    assert {w["worker"] for w in res} == {busy, idle}
    by_worker = {w["worker"]: {m["metric"]: m["stats"] for m in w["metrics"]} for w in res}
    cpu_busy = {s["aggregation"]: s for s in by_worker[busy]["cpu_usage"]}
    assert 10 <= len(cpu_busy["avg"]["dates"]) <= 11, "40 s buckets at least (interval 1 asked)"
    assert set(cpu_busy["avg"]["values"]) == {15, 0} and set(cpu_busy["max"]["values"]) == {20, 0}
    assert set(by_worker[idle]["memory_used"][0]["values"]) == {30, 0}

    split = api.ok(
        "workers.get_stats",
        {
            "items": [{"key": "gpu_usage", "aggregation": "avg"}],
            "split_by_resource": True,
            "worker_ids": [busy, idle],
            **window,
        },
    )["workers"]
    series = {w["worker"]: w["metrics"][0]["stats"][0]["resource_series"] for w in split}
    assert [set(s["values"]) for s in series[busy]] == [{60, 0}, {70, 0}]
    assert series[idle] == [], "one GPU: no split"
    assert (
        api.ok("workers.get_stats", {"items": items[:1], "worker_ids": ["nobody"], **window})["workers"] == []
    )

    activity = api.ok(
        "workers.get_activity_report", {"from_date": start, "to_date": start + 400, "interval": 2}
    )
    for series_name in ("total", "active"):
        assert len(activity[series_name]["dates"]) == len(activity[series_name]["counts"])
        assert 10 <= len(activity[series_name]["dates"]) <= 11, (
            "40 s buckets, the incomplete last one left out"
        )
    assert max(activity["total"]["counts"]) >= 2 and max(activity["active"]["counts"]) >= 1
