"""``label watch``: the real data arrives one day at a time; one version per labeling round."""

from __future__ import annotations

import shutil
import signal
import uuid
from pathlib import Path

from tests.conftest import api_client, run_python
from tests.labeling.helpers import Watch, drop_done, plots, versions
from training.data import SENSOR_COLUMNS

GUI_ROUND = """
from pathlib import Path
import shutil
from services.labeling.watch import LabelWatcher

watcher = LabelWatcher(Path({folder!r}), {project!r}, {name!r}, tags=["Production", "round-3"],
                       poll_seconds=0.2, progress=False)
watcher.start()
part = Path({folder!r}) / ".incoming.csv"
shutil.copyfile({src!r}, part)
part.rename(Path({folder!r}) / {dest!r})
report = watcher.stop()  # what a GUI's close event calls
print("REPORT", report.dataset_id, report.added, report.tags)
"""


def test_one_version_per_labeling_round_with_previews(clearml_env, days):
    project, name = f"Watch-{uuid.uuid4().hex[:6]}", "room-sensors"
    folder = Path(clearml_env["HOME"]) / "labeled"
    folder.mkdir()
    args = ("--project", project, "--dataset", name)

    # round 1 (Ctrl-C): day 1 is marked done; day 2 is still being written (temporary name)
    watch = Watch(clearml_env, folder, *args, "--tag", "round-1")
    watch.wait_for("Watching")
    drop_done(days[0], folder)
    (folder / f"{days[1].name}.part").write_text(days[1].read_text()[:500])
    watch.wait_for(f"uploaded {days[0].name}")
    assert watch.stop(signal.SIGINT) == 0, watch.stderr[-3000:]
    assert f"files added:    1 ({days[0].name})" in watch.output

    # round 2 (SIGTERM): day 2 is done, and a file with a bad label is refused, named precisely
    (folder / f"{days[1].name}.part").unlink()
    watch = Watch(clearml_env, folder, *args, "--tag", "round-2")
    watch.wait_for("Watching")
    bad = days[1].read_text().splitlines()
    bad[3] = bad[3][: bad[3].rfind(",")] + ",2"
    (folder / "bad-day.csv").write_text("\n".join(bad) + "\n")
    drop_done(days[1], folder)
    watch.wait_for(f"uploaded {days[1].name}")
    watch.wait_for("refused bad-day.csv")
    # the same minutes as day 1 (in the parent version) under another name: training would refuse
    # the version, so the watcher refuses the file, naming the one it clashes with
    shutil.copyfile(days[0], folder / "copy-of-day-1.csv")
    watch.wait_for("refused copy-of-day-1.csv")
    assert watch.stop(signal.SIGTERM) == 0, watch.stderr[-3000:]
    assert "bad-day.csv, line 4, column Occupancy: label '2' is not 0 or 1" in watch.output
    assert f"of room 'default' is also in {days[0].name}" in watch.output
    assert "Refused (not in this version): bad-day.csv, copy-of-day-1.csv" in watch.output
    (folder / "bad-day.csv").unlink()
    (folder / "copy-of-day-1.csv").unlink()

    # round 3: a labeling GUI embeds the watcher and finalizes from its close event
    out = run_python(
        GUI_ROUND.format(folder=str(folder), project=project, name=name, src=str(days[2]), dest=days[2].name),
        clearml_env,
    )
    assert f"['{days[2].name}'] ['Production', 'round-3']" in out

    # round 4: nothing new was labeled → no version
    watch = Watch(clearml_env, folder, *args)
    watch.wait_for("Watching")
    assert watch.stop(signal.SIGINT) == 0, watch.stderr[-3000:]
    assert "Nothing changed since version" in watch.output

    found = versions(clearml_env, project, name)
    assert [v["status"] for v in found] == ["completed"] * 3, found
    v1, v2, v3 = found
    assert [v["files"] for v in found] == [
        [days[0].name],
        [days[0].name, days[1].name],
        [d.name for d in days],
    ], "each round adds its day; temporary and refused files never enter a version"
    assert v1["parents"] == [] and v2["parents"] == [v1["id"]] and v3["parents"] == [v2["id"]]
    assert [v["tags"] for v in found] == [["round-1"], ["round-2"], ["Production", "round-3"]], (
        "a version carries the tags of its round, not its parent's"
    )
    for version, day in zip(found, days, strict=True):
        logged = plots(clearml_env, version["id"])
        for column in SENSOR_COLUMNS:
            assert day.name in logged.get(f"sensor: {column}", set()), (column, sorted(logged))
        assert f"preview: {day.name}" in logged and "version summary" in logged, sorted(logged)


def test_sigkill_mid_upload_leaves_no_partial_version_and_the_next_run_finishes(clearml_env, days):
    project, name = f"Kill-{uuid.uuid4().hex[:6]}", "room-sensors"
    folder = Path(clearml_env["HOME"]) / "labeled"
    folder.mkdir()
    args = ("--project", project, "--dataset", name)

    watch = Watch(clearml_env, folder, *args, "--tag", "Production")
    watch.wait_for("Watching")
    for day in days:
        drop_done(day, folder)
    opened = watch.wait_for("opened version").split()[2]
    watch.wait_for("uploaded ")  # the first file is up, the next ones are on their way
    watch.proc.kill()  # SIGKILL
    watch.finish()

    found = versions(clearml_env, project, name)
    assert [v for v in found if v["status"] == "completed"] == [], "no finalized partial version"
    assert [v["id"] for v in found] == [opened]
    storage = Path(clearml_env["CLEARML_DEFAULT_OUTPUT_URI"].removeprefix("file://"))
    assert any(opened in str(p) for p in storage.rglob("*.zip")), "a chunk of the killed run was up"

    watch = Watch(clearml_env, folder, *args, "--tag", "Production")
    watch.wait_for(f"Deleted the unfinished version {opened}")
    watch.wait_for("Watching")
    watch.wait_for(f"uploaded {days[-1].name}")
    assert watch.stop(signal.SIGTERM) == 0, watch.stderr[-3000:]

    found = versions(clearml_env, project, name)
    assert len(found) == 1 and found[0]["status"] == "completed", found
    assert found[0]["id"] != opened and found[0]["files"] == [d.name for d in days]
    assert found[0]["tags"] == ["Production"]
    left = [p for p in storage.rglob("*") if opened in str(p) and p.is_file()]
    assert not left, f"the killed run's chunks are deleted: {left}"
    assert not api_client(clearml_env).tasks.get_all(id=[opened], search_hidden=True)
