"""``label sync``: the upload button. Unchanged folder → no version; bad file → nothing created."""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

from tests.conftest import api_client, run_python
from tests.labeling.helpers import dataset_tasks, label, plots, versions


def test_sync_makes_a_version_only_when_something_changed(clearml_env, days):
    project, name = f"Sync-{uuid.uuid4().hex[:6]}", f"sensors-{uuid.uuid4().hex[:6]}"
    folder = Path(clearml_env["HOME"]) / "labeled"
    folder.mkdir()
    for day in days[:2]:
        shutil.copyfile(day, folder / day.name)
    args = (str(folder), "--project", project, "--dataset", name)

    first = label(clearml_env, "sync", *args, "--tag", "Production", "--tag", "round-1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"files added:    2 ({days[0].name}, {days[1].name})" in first.stdout
    assert "child of nothing: first version" in first.stdout and "tags: Production, round-1" in first.stdout

    again = label(clearml_env, "sync", *args, "--tag", "Production")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing changed since version" in again.stdout and "no new version created" in again.stdout
    assert len(dataset_tasks(clearml_env, name)) == 1, "no new version, not even an unfinished one"
    assert len(api_client(clearml_env).projects.get_all(name=f"^{project}", search_hidden=True)) >= 1

    # a corrected day and a new one: one modified, one added; only those two are uploaded
    lines = days[1].read_text().splitlines()
    (folder / days[1].name).write_text("\n".join(lines[:-10]) + "\n")
    shutil.copyfile(days[2], folder / days[2].name)
    labeled = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)  # the labeling tool's last write
    os.utime(folder / days[1].name, (labeled.timestamp() - 60,) * 2)
    os.utime(folder / days[2].name, (labeled.timestamp(),) * 2)
    os.utime(folder / days[0].name, (labeled.timestamp() + 3600,) * 2)  # unchanged: not counted
    third = label(clearml_env, "sync", *args)
    assert third.returncode == 0, third.stderr[-3000:]
    assert f"files added:    1 ({days[2].name})" in third.stdout
    assert f"files modified: 1 ({days[1].name})" in third.stdout
    assert "files removed:  0" in third.stdout and "delta size:" in third.stdout

    v1, v3 = versions(clearml_env, project, name)
    assert v1["status"] == v3["status"] == "completed" and v3["parents"] == [v1["id"]]
    assert v3["files"] == [d.name for d in days] and v3["tags"] == []
    logged = plots(clearml_env, v3["id"])
    assert {days[1].name, days[2].name} <= logged["sensor: CO2"], logged
    assert "version summary" in logged
    # when the round's labels were written travels with the version, for every client
    timeline = run_python(
        "from occupancy_mlops.timeline import read_timeline\n"
        "from occupancy_mlops.clearml_api import ClearmlApi\n"
        f"rows = read_timeline(ClearmlApi(), {project!r}, {name!r})\n"
        "print('\\n'.join(f'{r.dataset_id} {r.labeled.isoformat() if r.labeled else None}' for r in rows))",
        clearml_env,
    )
    assert f"{v3['id']} {labeled.isoformat()}" in timeline, timeline


def test_bad_files_are_refused_before_anything_is_created(clearml_env, days):
    project, name = f"Bad-{uuid.uuid4().hex[:6]}", f"sensors-{uuid.uuid4().hex[:6]}"
    folder = Path(clearml_env["HOME"]) / "labeled"
    folder.mkdir()
    header, *rows = days[0].read_text().splitlines()
    shutil.copyfile(days[1], folder / days[1].name)  # a good file beside the bad ones
    columns = header.split(",")
    (folder / "no-co2.csv").write_text(
        "\n".join(
            ",".join(c for i, c in enumerate(line.split(",")) if i != columns.index("CO2"))
            for line in [header, *rows[:20]]
        )
        + "\n"
    )
    text_rows = list(rows[:20])
    fields = text_rows[6].split(",")
    fields[columns.index("Temperature")] = "warm"
    text_rows[6] = ",".join(fields)
    (folder / "not-a-number.csv").write_text("\n".join([header, *text_rows]) + "\n")
    label_rows = list(rows[:20])
    label_rows[11] = label_rows[11][: label_rows[11].rfind(",")] + ",2"
    (folder / "label-two.csv").write_text("\n".join([header, *label_rows]) + "\n")

    proc = label(clearml_env, "sync", str(folder), "--project", project, "--dataset", name)
    assert proc.returncode != 0
    err = proc.stderr
    assert "no-co2.csv, line 1, column CO2: required column is missing" in err, err
    assert "not-a-number.csv, line 8, column Temperature: 'warm' is not a finite number" in err, err
    assert "label-two.csv, line 13, column Occupancy: label '2' is not 0 or 1" in err, err
    assert "nothing was created or uploaded" in err
    assert len(dataset_tasks(clearml_env, name)) == 0
    assert len(api_client(clearml_env).projects.get_all(name=f"^{project}", search_hidden=True)) == 0
    storage = Path(clearml_env["CLEARML_DEFAULT_OUTPUT_URI"].removeprefix("file://"))
    assert not any(storage.rglob("*")), "nothing uploaded"


def test_rooms_are_folders_and_a_kept_file_clashing_with_a_new_one_is_refused(clearml_env, days):
    project, name = f"Rooms-{uuid.uuid4().hex[:6]}", f"sensors-{uuid.uuid4().hex[:6]}"
    folder = Path(clearml_env["HOME"]) / "rooms"
    for room in ("room-a", "room-b"):  # the same day in two rooms: two series, not duplicates
        (folder / room).mkdir(parents=True)
        shutil.copyfile(days[0], folder / room / days[0].name)
    args = (str(folder), "--project", project, "--dataset", name)
    first = label(clearml_env, "sync", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "files added:    2" in first.stdout

    # the file leaves the folder but stays in the dataset (no --mirror); a new file with its
    # minutes would make a version that training refuses: refused before anything is created
    (folder / "room-a" / days[0].name).rename(folder / "room-a" / "renamed.csv")
    again = label(clearml_env, "sync", *args, "--tag", "Production")
    assert again.returncode != 0
    assert "room-a/renamed.csv, column date: timestamp" in again.stderr + again.stdout
    assert f"of room 'room-a' is also in room-a/{days[0].name}" in again.stderr + again.stdout
    assert "Traceback" not in again.stderr
    assert len(dataset_tasks(clearml_env, name)) == 1, "nothing was created"
    mirrored = label(clearml_env, "sync", *args, "--mirror", "--tag", "Production")
    assert mirrored.returncode == 0, mirrored.stderr[-3000:]
    assert "files added:    1 (room-a/renamed.csv)" in mirrored.stdout
    assert f"files removed:  1 (room-a/{days[0].name})" in mirrored.stdout
