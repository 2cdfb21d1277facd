"""The loop's report: what the demo (or anyone with a Prometheus that scraped serving) shows in plots.

Five figures, written as PNG files with a Markdown page that links them:

- accuracy per model version: the gate's score on the evaluation set and the live accuracy the
  replay client measured against the readings' labels, coloured by where the version ended
  (champion, former champion, rolled back, rejected);
- traffic split over time: requests a second per arm, from Prometheus;
- p95 latency per arm over time, from Prometheus;
- server-error ratio per arm over time, from Prometheus (client errors are the caller's fault and
  are left out, as in the canary analysis);
- labeled accuracy per model version over time: the delayed labels posted to ``/feedback/`` (the
  replay client's), as serving counted them and the canary controller judged them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ARM_COLOURS = {"champion": "tab:blue", "canary": "tab:orange"}
STATE_COLOURS = {
    "champion": "tab:green",
    "former-champion": "tab:blue",
    "rolled-back": "tab:red",
    "rejected": "tab:gray",
    "candidate": "tab:olive",
    "canary": "tab:orange",
}


@dataclass
class VersionRow:
    """One model version for the accuracy figure."""

    version: str
    model_id: str
    state: str
    eval_accuracy: float | None
    live_accuracy: float | None
    reason: str = ""
    live_answers: int = 0
    """Answers of this version the replay client checked against the labels."""


Series = dict[str, tuple[list[float], list[float]]]
"""arm → (unix times, values)."""


def query_range(
    prometheus_url: str, promql: str, start: float, end: float, step: float, key: str = "arm"
) -> Series:
    """A PromQL range query, one series per value of the label ``key``."""
    resp = requests.get(
        f"{prometheus_url}/api/v1/query_range",
        params={"query": promql, "start": str(start), "end": str(end), "step": str(step)},
        timeout=30,
    )
    body: dict[str, Any] = resp.json()
    if resp.status_code != 200 or body.get("status") != "success":
        raise RuntimeError(
            f"Prometheus range query failed ({resp.status_code}): {body.get('error')}: {promql}"
        )
    out: Series = {}
    for result in body["data"]["result"]:
        arm = result["metric"].get(key, "all")
        if key == "model_version":
            arm = f"v{arm}"
        times = [float(t) for t, _ in result["values"]]
        values = [float(v) for _, v in result["values"]]
        out[arm] = (times, values)
    return out


def serving_series(
    prometheus_url: str, start: float, end: float, window: str = "10s", label_window: str = "30s"
) -> dict[str, Series]:
    """Traffic, p95 latency and server-error ratio per arm of the ``occupancy`` endpoint, and the
    accuracy on the labels that arrived per model version (over ``label_window``)."""
    sel = 'endpoint="occupancy",arm!="none"'
    step = max(1.0, (end - start) / 300)
    return {
        "traffic": query_range(
            prometheus_url,
            f"sum by (arm) (rate(occupancy_serving_requests_total{{{sel}}}[{window}]))",
            start,
            end,
            step,
        ),
        "p95": query_range(
            prometheus_url,
            "histogram_quantile(0.95, sum by (arm, le) "
            f"(rate(occupancy_serving_request_duration_seconds_bucket{{{sel}}}[{window}])))",
            start,
            end,
            step,
        ),
        "errors": query_range(
            prometheus_url,
            f'sum by (arm) (rate(occupancy_serving_errors_total{{{sel},kind="server"}}[{window}])) '
            f"/ sum by (arm) (rate(occupancy_serving_requests_total{{{sel}}}[{window}]))",
            start,
            end,
            step,
        ),
        "labeled": query_range(
            prometheus_url,
            f'sum by (model_version) (increase(occupancy_serving_feedback_total{{{sel},correct="true"}}'
            f"[{label_window}])) / sum by (model_version) "
            f"(increase(occupancy_serving_feedback_total{{{sel}}}[{label_window}]))",
            start,
            end,
            step,
            key="model_version",
        ),
    }


def _time_axis(series: Series, start: float) -> Series:
    return {arm: ([t - start for t in times], values) for arm, (times, values) in series.items()}


def write_report(
    out_dir: Path,
    versions: list[VersionRow],
    series: dict[str, Series] | None,
    start: float,
    events: list[tuple[float, str]] | None = None,
) -> Path:
    """Write the figures and ``report.md`` into ``out_dir``; returns the Markdown page."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, str]] = []

    fig, ax = plt.subplots(figsize=(8, 4))
    xs = list(range(len(versions)))
    width = 0.4
    ax.bar(
        [x - width / 2 for x in xs],
        [100 * (v.eval_accuracy or 0) for v in versions],
        width,
        color=[STATE_COLOURS.get(v.state, "tab:gray") for v in versions],
        label="gate (evaluation set)",
    )
    ax.bar(
        [x + width / 2 for x in xs],
        [100 * (v.live_accuracy or 0) for v in versions],
        width,
        color=[STATE_COLOURS.get(v.state, "tab:gray") for v in versions],
        alpha=0.45,
        hatch="//",
        label="live (replayed labels)",
    )
    ax.set_xticks(xs, [f"v{v.version}\n{v.state}\nlive n={v.live_answers:,}" for v in versions])
    scores = [100 * a for v in versions for a in (v.eval_accuracy, v.live_accuracy) if a]
    ax.set_ylim(max(0.0, min(scores, default=90) - 2), 100)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy per model version")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy.png", dpi=110)
    plt.close(fig)
    figures.append(("Accuracy per model version", "accuracy.png"))

    panels = (
        ("traffic", "requests / s", "Traffic split per arm"),
        ("p95", "p95 latency (ms)", "p95 latency per arm"),
        ("errors", "server-error ratio", "Server-error ratio per arm"),
        ("labeled", "accuracy on labels (%)", "Labeled accuracy per model version (feedback)"),
    )
    for key, ylabel, title in panels:
        fig, ax = plt.subplots(figsize=(9, 3.5))
        data = _time_axis(series.get(key, {}), start) if series else {}
        for arm, (times, values) in sorted(data.items()):
            scale = {"p95": 1000.0, "labeled": 100.0}.get(key, 1.0)
            ax.plot(times, [v * scale for v in values], label=arm, color=ARM_COLOURS.get(arm))
        for at, text in events or []:
            ax.axvline(at - start, color="black", linewidth=0.6, linestyle=":")
            ax.annotate(
                text,
                (at - start, 1.0),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=7,
            )
        ax.set_xlabel("seconds since serving started")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if data:
            ax.legend(loc="upper left")
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
        fig.tight_layout()
        name = f"{key}.png"
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        figures.append((title, name))

    lines = [
        "# The loop's report",
        "",
        "| version | model | state | gate accuracy | live accuracy (answers) | reason |",
        "|---|---|---|---|---|---|",
    ]
    for v in versions:
        gate = f"{v.eval_accuracy:.2%}" if v.eval_accuracy is not None else "-"
        live = f"{v.live_accuracy:.2%}" if v.live_accuracy is not None else "-"
        live += f" ({v.live_answers:,})"
        lines.append(f"| v{v.version} | {v.model_id[:8]} | {v.state} | {gate} | {live} | {v.reason} |")
    lines.append("")
    for title, name in figures:
        lines += [f"## {title}", "", f"![{title}]({name})", ""]
    page = out_dir / "report.md"
    page.write_text("\n".join(lines))
    return page
