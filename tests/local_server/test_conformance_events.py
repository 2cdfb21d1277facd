"""events.*: the real ClearML server's behaviour (issue 12), pinned call by call.

Written from clearml-server's documented behaviour (``apiserver/schema/services/events.conf``, its
error codes and API tests): a batch with no valid event is refused (400/131), scalars keep the full
``last_metrics`` summary, logs page by timestamp in the asked order, histograms are sampled, raw
scalars scroll, plots and debug images come by latest iterations with navigation states, and the
sample endpoints answer with the valid iteration range.
"""

from __future__ import annotations

import json
import time
import uuid
from statistics import mean
from typing import Any

import pytest

from local_server import LocalServer
from tests.local_server.helpers import Api


@pytest.fixture(scope="module")
def api(server: LocalServer) -> Api:
    return Api(server)


def _task(api: Api) -> str:
    return str(api.ok("tasks.create", {"name": f"ev-{uuid.uuid4().hex[:8]}", "type": "training"})["id"])


def _event(etype: str, task: str | None, iteration: int, **fields: Any) -> dict[str, Any]:
    return {
        "worker": "test",
        "type": etype,
        "task": task,
        "iter": iteration,
        "timestamp": int(time.time() * 1000),
        **fields,
    }


def _batch(api: Api, events: list[dict[str, Any]]) -> dict[str, Any]:
    res = api.call("events.add_batch", raw="\n".join(json.dumps(e) for e in events))
    assert res.status_code == 200, res.text
    return res.json()["data"]


def _scalars(task: str, count: int, metric: str = "M", variant: str = "V") -> list[dict[str, Any]]:
    return [
        _event("training_stats_scalar", task, i, metric=metric, variant=variant, value=i)
        for i in range(count)
    ]


def test_a_batch_without_a_valid_event_is_refused_with_the_reasons(api: Api) -> None:
    task = _task(api)
    bad = [
        _event("unknown type", task, 1),
        _event("training_debug_image", None, 1),
        _event("training_debug_image", "no-such-task", 1),
    ]
    res = api.call("events.add_batch", raw="\n".join(json.dumps(e) for e in bad))
    meta = res.json()["meta"]
    assert (meta["result_code"], meta["result_subcode"]) == (400, 131)
    assert "Invalid event type unknown_type" in meta["result_msg"]
    added = _batch(api, [*bad, _event("training_debug_image", task, 1, url="u")])
    assert (added["added"], added["errors"], len(added["errors_info"])) == (1, 3, 3)
    single = api.ok("events.add", _event("log", task, 1, msg="one line"))
    assert single["added"] == 1


def test_last_metrics_keep_the_full_summary_across_batches(api: Api) -> None:
    task = _task(api)
    events = _scalars(task, 100)
    _batch(api, events[:50])
    _batch(api, events[50:])
    [[entry]] = [
        list(v.values()) for v in api.ok("tasks.get_by_id", {"task": task})["task"]["last_metrics"].values()
    ]
    assert (entry["value"], entry["max_value"], entry["max_value_iteration"]) == (99, 99, 99)
    assert (entry["min_value"], entry["min_value_iteration"]) == (0, 0)
    assert (entry["first_value"], entry["first_value_iteration"]) == (0, 0)
    assert entry["count"] == 100 and entry["mean_value"] == mean(range(100))
    assert api.ok("events.get_task_latest_scalar_values", {"task": task})["last_iter"] == 99


def test_logs_page_by_timestamp_in_the_asked_order(api: Api) -> None:
    task = _task(api)
    start = int(time.time() * 1000)
    _batch(api, [_event("log", task, i, timestamp=start + i * 1000, msg=f"line {i}") for i in range(10)])
    first = api.ok("events.get_task_log", {"task": task, "batch_size": 5})
    stamps = [e["timestamp"] for e in first["events"]]
    assert first["total"] == 10 and stamps == sorted(stamps, reverse=True) and stamps[0] == start + 9000
    older = api.ok("events.get_task_log", {"task": task, "batch_size": 5, "from_timestamp": stamps[-1]})
    assert [e["iter"] for e in older["events"]] == [4, 3, 2, 1, 0]
    asc = api.ok("events.get_task_log", {"task": task, "batch_size": 5, "order": "asc"})
    assert [e["iter"] for e in asc["events"]] == [5, 6, 7, 8, 9]
    later = api.ok(
        "events.get_task_log",
        {"task": task, "batch_size": 5, "from_timestamp": start + 4000, "navigate_earlier": False},
    )
    assert [e["iter"] for e in later["events"]] == [5, 6, 7, 8, 9]


def test_histogram_samples_and_raw_scalars_scroll(api: Api) -> None:
    task = _task(api)
    _batch(api, _scalars(task, 100))
    full = api.ok("events.scalar_metrics_iter_histogram", {"task": task})["M"]["V"]
    assert full["x"] == list(range(100))
    ten = api.ok("events.scalar_metrics_iter_histogram", {"task": task, "samples": 10})["M"]["V"]
    assert ten["x"] == list(range(0, 100, 10))
    assert ten["y"] == [mean(range(i, i + 10)) for i in range(0, 100, 10)]

    metric = {"metric": "M", "variants": ["V"]}
    res = api.ok(
        "events.scalar_metrics_iter_raw",
        {"task": task, "batch_size": 15, "metric": metric, "count_total": True},
    )
    assert res["total"] == 100 and res["scroll_id"]
    iters: list[int] = []
    calls = 0
    while res["returned"]:
        calls += 1
        iters += res["variants"]["V"]["iter"]
        res = api.ok(
            "events.scalar_metrics_iter_raw", {"task": task, "metric": metric, "scroll_id": res["scroll_id"]}
        )
    assert calls == 7 and iters == list(range(100))

    _batch(
        api,
        [
            _event("training_stats_vector", task, i, metric="vec", variant="v", values=[i, i + 1])
            for i in (1, 0)
        ],
    )
    vectors = api.ok("events.vector_metrics_iter_histogram", {"task": task, "metric": "vec", "variant": "v"})
    assert (vectors["iterations"], vectors["vectors"]) == ([0, 1], [[0, 1], [1, 2]])


def test_task_metrics_and_multi_task_plots_of_the_latest_iteration(api: Api) -> None:
    t1, t2 = _task(api), _task(api)
    _batch(
        api,
        [
            _event("plot", t1, 1, metric="A", variant="AX", plot_str="t1-1-A"),
            _event("plot", t1, 2, metric="B", variant="BX", plot_str="t1-2-B"),
            _event("plot", t1, 3, metric="B", variant="BX", plot_str="t1-3-B"),
            _event("plot", t2, 2, metric="A", variant="AY", plot_str="t2-2-A"),
        ],
    )
    plots = api.ok("events.get_multi_task_plots", {"tasks": [t1, t2]})["plots"]
    assert set(plots) == {"A", "B"} and set(plots["A"]) == {"AX", "AY"}
    assert plots["B"]["BX"][t1]["3"]["plots"][0]["plot_str"] == "t1-3-B"
    assert "2" not in plots["B"]["BX"][t1], "only the latest iteration"
    assert set(
        api.ok("events.get_multi_task_plots", {"tasks": [t1, t2], "metrics": [{"metric": "A"}]})["plots"]
    ) == {"A"}
    res = api.ok("events.get_task_metrics", {"tasks": [t1, t2], "event_type": "plot"})["metrics"]
    assert {m["task"]: m["metrics"] for m in res} == {t1: ["A", "B"], t2: ["A"]}


def test_debug_images_navigate_iterations_and_skip_overwritten_files(api: Api) -> None:
    task = _task(api)
    empty = api.ok("events.debug_images", {"metrics": [{"task": task}], "iters": 5})
    assert empty["metrics"] == [{"task": task, "iterations": []}]
    # variant V1 recycles 7 file names, V2 4: older iterations were overwritten
    _batch(
        api,
        [
            _event("training_debug_image", task, n, metric="M", variant=v, url=f"M_{v}_{n % unique}")
            for n in range(10)
            for v, unique in (("V1", 7), ("V2", 4))
        ],
    )
    page = api.ok("events.debug_images", {"metrics": [{"task": task, "metric": "M"}], "iters": 5})
    its = page["metrics"][0]["iterations"]
    assert [i["iter"] for i in its] == [9, 8, 7, 6, 5]
    assert [len(i["events"]) for i in its] == [2, 2, 2, 2, 1], "V2's images before iteration 6 are gone"
    older = api.ok(
        "events.debug_images",
        {"metrics": [{"task": task, "metric": "M"}], "iters": 5, "scroll_id": page["scroll_id"]},
    )
    assert [i["iter"] for i in older["metrics"][0]["iterations"]] == [4, 3]

    sample = api.ok("events.get_debug_image_sample", {"task": task, "metric": "M", "variant": "V2"})
    assert sample["event"]["iter"] == 9 and (sample["min_iteration"], sample["max_iteration"]) == (6, 9)
    at = api.ok(
        "events.get_debug_image_sample",
        {"task": task, "metric": "M", "variant": "V2", "iteration": 7, "scroll_id": sample["scroll_id"]},
    )
    assert at["event"]["url"] == "M_V2_3"
    none = api.ok("events.get_debug_image_sample", {"task": task, "metric": "M", "variant": "V9"})
    assert none["event"] is None and none["min_iteration"] is None


def test_plots_and_plot_samples(api: Api) -> None:
    task = _task(api)
    assert api.ok("events.get_plot_sample", {"task": task, "metric": "M"})["events"] == []
    _batch(
        api,
        [
            _event("plot", task, n // 2, metric="M", variant=f"V{n % 2}", plot_str=f"plot {n}")
            for n in range(10)
        ],
    )
    sample = api.ok("events.get_plot_sample", {"task": task, "metric": "M"})
    assert [e["plot_str"] for e in sample["events"]] == ["plot 8", "plot 9"]
    assert (sample["min_iteration"], sample["max_iteration"]) == (0, 4)
    at = api.ok(
        "events.get_plot_sample",
        {"task": task, "metric": "M", "iteration": 3, "scroll_id": sample["scroll_id"]},
    )
    assert [e["plot_str"] for e in at["events"]] == ["plot 6", "plot 7"]
    res = api.ok("events.plots", {"metrics": [{"task": task}], "iters": 2})
    assert [i["iter"] for i in res["metrics"][0]["iterations"]] == [4, 3]
