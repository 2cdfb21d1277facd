"""queues.*: the real ClearML server's behaviour (issue 12), pinned call by call.

Written from clearml-server's documented behaviour (``apiserver/schema/services/queues.conf``, its
error codes and API tests): a fresh server has a ``default`` queue, tasks taken out of a queue go
back to their status before ``enqueue``, listings honour ``max_task_entries``, ``get_all_ex`` shows
workers and hides ``k8s-glue`` queues, and ``get_queue_metrics`` reports what the queue went through.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from local_server import LocalServer, local_server
from tests.local_server.helpers import Api


@pytest.fixture(scope="module")
def api(server: LocalServer) -> Api:
    return Api(server)


def _queue(api: Api, **fields: object) -> str:
    return str(api.ok("queues.create", {"name": f"q-{uuid.uuid4().hex[:8]}", **fields})["id"])


def _task(api: Api) -> str:
    return str(api.ok("tasks.create", {"name": f"t-{uuid.uuid4().hex[:8]}", "type": "training"})["id"])


def _queued(api: Api, queue: str) -> str:
    task = _task(api)
    api.ok("tasks.enqueue", {"task": task, "queue": queue})
    return task


def _status(api: Api, task: str) -> tuple[str, str | None]:
    doc = api.ok("tasks.get_by_id", {"task": task})["task"]
    return doc["status"], doc["execution"].get("queue")


def test_a_fresh_server_has_the_default_queue_that_enqueue_uses(tmp_path: Path) -> None:
    with local_server(tmp_path / "fresh") as srv:
        api = Api(srv)
        default = api.ok("queues.get_default")
        assert default["name"] == "default"
        [queue] = api.ok("queues.get_all", {})["queues"]
        assert queue["system_tags"] == ["default"]
        task = _task(api)
        api.ok("tasks.enqueue", {"task": task})  # no queue given: the default one
        assert _status(api, task) == ("queued", default["id"])
    with local_server(tmp_path / "fresh") as srv:  # a restart adds no second one
        assert len(Api(srv).ok("queues.get_all", {})["queues"]) == 1


def test_tasks_leaving_a_queue_go_back_to_their_status(api: Api) -> None:
    queue = _queue(api)
    kept, reset = _queued(api, queue), _queued(api, queue)
    assert api.ok("queues.remove_task", {"queue": queue, "task": kept})["removed"] == 1
    assert _status(api, kept) == ("queued", queue), "without update_task_status the task is left alone"
    api.ok("queues.remove_task", {"queue": queue, "task": reset, "update_task_status": True})
    assert _status(api, reset) == ("created", None)

    cleared = _queued(api, queue)
    assert api.ok("queues.clear_queue", {"queue": queue})["removed_tasks"] == [cleared]
    assert _status(api, cleared) == ("created", None)

    deleted = _queued(api, queue)
    meta = api.call("queues.delete", {"queue": queue}).json()["meta"]
    assert (meta["result_code"], meta["result_subcode"]) == (400, 702)
    api.ok("queues.delete", {"queue": queue, "force": True})
    assert _status(api, deleted) == ("created", None)


def test_metadata_given_to_create_is_kept_and_can_be_deleted(api: Api) -> None:
    meta = {"test_key": {"key": "test_key", "type": "str", "value": "test_value"}}
    queue = _queue(api, metadata=meta)
    [found] = api.ok("queues.get_all_ex", {"id": [queue]})["queues"]
    assert found["metadata"] == meta
    api.ok("queues.add_or_update_metadata", {"queue": queue, "metadata": [{"key": "k2", "value": "v"}]})
    assert api.ok("queues.delete_metadata", {"queue": queue, "keys": ["k2"]})["updated"] == 1
    assert api.ok("queues.get_by_id", {"queue": queue})["queue"]["metadata"] == meta


def test_listings_honour_max_task_entries_and_get_all_ex_names_tasks_and_workers(api: Api) -> None:
    queue = _queue(api, display_name="shown")
    tasks = [_queued(api, queue) for _ in range(3)]
    [q] = api.ok("queues.get_all", {"id": [queue], "max_task_entries": 2})["queues"]
    assert [e["task"] for e in q["entries"]] == tasks[:2]
    assert [
        e["task"]
        for e in api.ok("queues.get_by_id", {"queue": queue, "max_task_entries": 1})["queue"]["entries"]
    ] == tasks[:1]

    worker = f"w-{uuid.uuid4().hex[:8]}"
    running = _task(api)
    api.ok("tasks.started", {"task": running})
    api.ok("workers.register", {"worker": worker, "queues": [queue]})
    api.ok("workers.status_report", {"worker": worker, "task": running, "timestamp": int(time.time() * 1000)})
    [ex] = api.ok("queues.get_all_ex", {"id": [queue]})["queues"]
    assert [e["task"]["id"] for e in ex["entries"]] == tasks
    [again] = api.ok("queues.get_all_ex", {"id": [queue], "max_task_entries": 2})["queues"]
    assert [e["task"]["id"] for e in again["entries"]] == tasks[:2], "listing left the queue as it was"
    assert [e["task"] for e in api.ok("queues.get_by_id", {"queue": queue})["queue"]["entries"]] == tasks
    assert ex["entries"][0]["task"]["name"].startswith("t-")
    [w] = ex["workers"]
    assert w["name"] == worker and w["ip"] == "127.0.0.1" and w["task"]["id"] == running
    assert w["key"].endswith(f"_{worker}")


def test_get_all_ex_hides_k8s_glue_queues_unless_asked(api: Api) -> None:
    hidden = _queue(api, system_tags=["k8s-glue"])
    shown = _queue(api)
    ids = {q["id"] for q in api.ok("queues.get_all_ex", {})["queues"]}
    assert shown in ids and hidden not in ids
    assert hidden in {q["id"] for q in api.ok("queues.get_all_ex", {"search_hidden": True})["queues"]}
    assert [q["id"] for q in api.ok("queues.get_all_ex", {"id": [hidden]})["queues"]] == [hidden]


def test_queue_metrics_report_length_and_waiting_time(api: Api) -> None:
    queue = _queue(api)
    _queued(api, queue)
    time.sleep(1.1)
    second = _queued(api, queue)
    api.ok("queues.get_next_task", {"queue": queue})
    api.ok("queues.remove_task", {"queue": queue, "task": second})
    now = time.time()
    res = api.ok(
        "queues.get_queue_metrics",
        {"queue_ids": [queue], "from_date": now - 3600, "to_date": now, "interval": 5},
    )["queues"]
    [metrics] = res
    assert metrics["queue"] == queue
    assert 1 <= len(metrics["dates"]) <= 2
    assert len(metrics["avg_waiting_times"]) == len(metrics["queue_lengths"]) == len(metrics["dates"])
    assert metrics["dates"][0] / 1000 > now - 15
    assert max(metrics["queue_lengths"]) >= 1 and max(metrics["avg_waiting_times"]) > 0
    total = api.ok("queues.get_queue_metrics", {"from_date": now - 60, "to_date": now + 1, "interval": 5})
    assert total["queues"][0]["queue"] == "total"
