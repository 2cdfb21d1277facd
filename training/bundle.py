"""A trained model on disk: the Keras model, its portable numpy form, the feature schema and
metadata. The same folder is what the tracked task uploads as the ClearML model package and what
serving and ``occupancy-mlops evaluate`` load."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.features import FeatureSchema, WindowFeature, make_features
from training.portable import PortableModel

KERAS_FILE = "model.keras"
PORTABLE_FILE = "model.npz"
METADATA_FILE = "metadata.json"


def schema_to_dict(schema: FeatureSchema) -> dict[str, Any]:
    data = asdict(schema)
    data["feature_names"] = list(schema.feature_names)
    data["window_minutes"] = schema.window_minutes
    data["history_rows"] = schema.history_rows
    return data


def schema_from_dict(data: dict[str, Any]) -> FeatureSchema:
    return FeatureSchema(
        raw_columns=tuple(data["raw_columns"]),
        log_columns=tuple(data["log_columns"]),
        current_columns=tuple(data["current_columns"]),
        window_features=tuple(WindowFeature(**f) for f in data["window_features"]),
        max_gap_minutes=float(data["max_gap_minutes"]),
    )


@dataclass
class ModelBundle:
    portable: PortableModel
    schema: FeatureSchema
    metadata: dict[str, Any]

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Occupancy probability for every reading of ``frame`` (time-ordered readings)."""
        return self.portable.predict_proba(make_features(frame, self.schema).to_numpy())

    @classmethod
    def load(cls, folder: Path) -> ModelBundle:
        folder = Path(folder)
        missing = [n for n in (PORTABLE_FILE, METADATA_FILE) if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} is not a model folder: {', '.join(missing)} missing")
        metadata = json.loads((folder / METADATA_FILE).read_text())
        schema = schema_from_dict(metadata["feature_schema"])
        portable = PortableModel.load(folder / PORTABLE_FILE)
        if portable.n_inputs != len(schema.feature_names):
            raise ValueError(
                f"{folder}: the model takes {portable.n_inputs} inputs but its schema has "
                f"{len(schema.feature_names)} features"
            )
        return cls(portable, schema, metadata)


def write_metadata(folder: Path, metadata: dict[str, Any]) -> Path:
    path = Path(folder) / METADATA_FILE
    path.write_text(json.dumps(metadata, indent=2, sort_keys=True, default=str))
    return path
