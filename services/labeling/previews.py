"""The preview logged on every dataset version before it is finalized.

- ``sensor: <column>`` (one scatter plot per sensor column): every reading of the first few files
  of the version's change, x = hours since midnight of the file's first day, one series per file,
  so the days of a labeling round lie on top of each other.
- ``preview: <file>`` (table): the first rows of each of those files, as the labeling tool wrote them.
- ``version summary`` (table): one row per file of the version (changed ones first, at most 100):
  status in this version (added, modified, unchanged), rows, first and last reading, share of
  occupied minutes.
- ``input drift`` (table): PSI and KS of the readings this version adds or changes against the current
  champion's training data, per input, input change and model feature, with the limits from the
  training days (:mod:`training.drift`, ``docs/drift.md``); one line in the console log says the
  verdict, or why there is none (no champion yet, a champion from before drift references).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from training.data import LABEL_COLUMN, SENSOR_COLUMNS, TIME_COLUMN, read_labeled_csv

if TYPE_CHECKING:
    from clearml import Logger

PREVIEW_FILES = 3
PREVIEW_ROWS = 10
SUMMARY_FILES = 100


def report_previews(
    logger: Logger,
    files: dict[str, Path],
    changed: dict[str, str],
    preview_files: int = PREVIEW_FILES,
) -> list[str]:
    """Log the scatter plots and tables for a version; returns the dataset paths plotted.

    ``files`` maps every dataset path of the version that is on local disk to its file;
    ``changed`` maps the paths this version added or modified to "added"/"modified" (they are
    previewed first).
    """
    order = [p for p in changed if p in files] + [p for p in files if p not in changed]
    chosen = order[:preview_files]
    for rel in chosen:
        frame = read_labeled_csv(files[rel])
        times = frame[TIME_COLUMN]
        hours = ((times - times.iloc[0].normalize()) / pd.Timedelta(hours=1)).to_numpy(dtype=float)
        for column in SENSOR_COLUMNS:
            logger.report_scatter2d(
                title=f"sensor: {column}",
                series=rel,
                scatter=np.column_stack([hours, frame[column].to_numpy(dtype=float)]),
                iteration=0,
                xaxis=f"hours since midnight of the file's first day ({times.iloc[0]:%Y-%m-%d})",
                yaxis=column,
                mode="markers",
            )
        head = pd.read_csv(files[rel], dtype=str, nrows=PREVIEW_ROWS, keep_default_na=False)
        logger.report_table(title=f"preview: {rel}", series="first rows", iteration=0, table_plot=head)
    logger.report_table(
        title="version summary",
        series="files",
        iteration=0,
        table_plot=_summary({rel: files[rel] for rel in order[:SUMMARY_FILES]}, changed),
    )
    return chosen


def _summary(files: dict[str, Path], changed: dict[str, str]) -> pd.DataFrame:
    rows = []
    for rel, path in files.items():
        frame = read_labeled_csv(path)
        rows.append(
            {
                "file": rel,
                "in this version": changed.get(rel, "unchanged"),
                "rows": len(frame),
                "first reading": f"{frame[TIME_COLUMN].min():%Y-%m-%d %H:%M}",
                "last reading": f"{frame[TIME_COLUMN].max():%Y-%m-%d %H:%M}",
                "occupied": f"{frame[LABEL_COLUMN].mean():.1%}",
            }
        )
    return pd.DataFrame(rows).set_index("file")


DRIFT_TITLE = "input drift"


def report_drift(logger: Logger, files: dict[str, Path], project: str, model_name: str | None = None) -> str:
    """Log the input drift of ``files`` (the readings this version adds or changes) against the
    current champion's training data (its model package's ``drift_reference``) as the table
    ``input drift`` and one console line; returns that line. Never raises: no champion yet, a
    champion trained before drift references, or any failure is said in the table and the line."""
    try:
        line, table = _drift(files, project, model_name)
    except Exception as exc:  # the preview must never fail the version
        line, table = f"input drift not computed: {type(exc).__name__}: {exc}", None
    if table is None:
        table = pd.DataFrame({"input drift": [line]}).set_index("input drift")
    logger.report_table(title=DRIFT_TITLE, series="against the champion's training data", iteration=0,
                        table_plot=table)  # fmt: skip
    logger.report_text(line)
    return line


def _drift(files: dict[str, Path], project: str, model_name: str | None) -> tuple[str, pd.DataFrame | None]:
    from training.bundle import ModelBundle
    from training.config import DEFAULTS
    from training.data import load_dataset_files
    from training.drift import MIN_READINGS, DriftReference, NoDriftReference, compare
    from training.registry import ModelRegistry

    if not files:
        return "input drift: no new readings in this version", None
    name = model_name or str(DEFAULTS["MODEL_NAME"])
    champion = ModelRegistry(project, name).read().champion
    if not champion:
        return f"input drift: no champion {name} in {project} yet, nothing to compare with", None
    from clearml import Model

    local = Model(model_id=champion).get_local_copy(extract_archive=True, raise_on_error=True)
    bundle = ModelBundle.load(Path(local))
    try:
        reference = DriftReference.from_metadata(bundle.metadata)
    except NoDriftReference:
        return f"input drift: champion {champion} was trained before drift references existed", None
    frame = load_dataset_files(files)
    if len(frame) < MIN_READINGS:
        return f"input drift: {len(frame)} new readings, fewer than the {MIN_READINGS} needed", None
    report = compare(reference, frame, bundle.schema)
    return f"input drift against champion {champion}: {report.summary()}", report.table()
