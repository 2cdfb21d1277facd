"""Flow a: dataset versions with the real clearml SDK against the local server."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from tests.conftest import run_python

FLOW = r"""
import json, sys
from pathlib import Path
from clearml import Dataset

folder = Path(sys.argv[1] if len(sys.argv) > 1 else "labeled")
ds = Dataset.get(dataset_project="FlowA", dataset_name="sensors", auto_create=True, writable_copy=True)
ds.add_files(path=str(folder))
ds.finalize(auto_upload=True)
print(json.dumps({"id": ds.id, "parents": ds._get_parents(), "summary": {
    k: v.hash for k, v in ds.file_entries_dict.items()}}))
"""


def _write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def _storage_files(env: dict[str, str]) -> list[Path]:
    root = Path(env["CLEARML_DEFAULT_OUTPUT_URI"].removeprefix("file://"))
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_two_versions_upload_only_the_delta_and_round_trip(clearml_env, tmp_path):
    labeled = Path(clearml_env["HOME"]) / "labeled"
    for day in ("2015-02-04", "2015-02-05", "2015-02-06"):
        _write(labeled, f"{day}.csv", f"date,Light,Occupancy\n{day} 10:00,400,1\n")
    v1 = json.loads(run_python(FLOW, clearml_env).strip().splitlines()[-1])
    chunks_v1 = _storage_files(clearml_env)

    _write(labeled, "2015-02-06.csv", "date,Light,Occupancy\n2015-02-06 10:00,0,0\n")
    v2 = json.loads(run_python(FLOW, clearml_env).strip().splitlines()[-1])
    chunks_v2 = _storage_files(clearml_env)

    assert v2["parents"] == [v1["id"]], "the second version must be a child of the first"
    assert v1["summary"]["2015-02-04.csv"] == v2["summary"]["2015-02-04.csv"]
    assert v1["summary"]["2015-02-06.csv"] != v2["summary"]["2015-02-06.csv"]
    new_chunks = [p for p in chunks_v2 if p not in chunks_v1 and p.suffix == ".zip"]
    assert len(new_chunks) == 1, f"one new data chunk expected, got {new_chunks}"
    with zipfile.ZipFile(new_chunks[0]) as chunk:
        assert chunk.namelist() == ["2015-02-06.csv"], "only the changed file may be uploaded again"

    # a fresh cache (another machine) gets every file back byte-identical
    other = dict(clearml_env, CLEARML_CACHE_DIR=str(Path(clearml_env["HOME"]) / "fresh-cache"))
    copy_dir = (
        run_python(
            f"""
        from clearml import Dataset
        print(Dataset.get(dataset_id={v2["id"]!r}).get_local_copy())
        """,
            other,
        )
        .strip()
        .splitlines()[-1]
    )
    restored = {p.name: p.read_bytes() for p in Path(copy_dir).rglob("*.csv")}
    expected = {p.name: p.read_bytes() for p in labeled.glob("*.csv")}
    assert restored == expected


def test_tags_filter_and_latest_version(clearml_env, tmp_path):
    out = run_python(
        """
        import json
        from pathlib import Path
        from clearml import Dataset

        ids = []
        for day in range(3):
            folder = Path(f"day{day}"); folder.mkdir()
            (folder / f"d{day}.csv").write_text(f"x\\n{day}\\n")
            ds = Dataset.get(dataset_project="FlowTags", dataset_name="sensors",
                             auto_create=True, writable_copy=True)
            ds.add_files(path=str(folder))
            ds.finalize(auto_upload=True)
            ids.append(ds.id)
        Dataset.get(dataset_id=ids[1]).add_tags(["Production"])
        tagged = Dataset.list_datasets(dataset_project="FlowTags", tags=["Production"])
        every = Dataset.list_datasets(dataset_project="FlowTags")
        latest = Dataset.get(dataset_project="FlowTags", dataset_name="sensors")
        prod = Dataset.get(dataset_project="FlowTags", dataset_name="sensors", dataset_tags=["Production"])
        print(json.dumps({"ids": ids, "tagged": [d["id"] for d in tagged], "every": [d["id"] for d in every],
                          "latest": latest.id, "prod": prod.id, "files": sorted(latest.list_files())}))
        """,
        clearml_env,
    )
    result = json.loads(out.strip().splitlines()[-1])
    ids = result["ids"]
    assert result["tagged"] == [ids[1]]
    assert sorted(result["every"]) == sorted(ids)
    assert result["latest"] == ids[2]
    assert result["prod"] == ids[1]
    # each version holds every earlier file (parent -> child)
    assert result["files"] == ["d0.csv", "d1.csv", "d2.csv"]
    assert os.path.isdir(clearml_env["HOME"])
