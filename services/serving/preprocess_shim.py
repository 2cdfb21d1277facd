"""Uploaded as the endpoints' preprocess artifact ``py_code_occupancy``: clearml-serving loads this
file and uses its ``Preprocess``. The code itself comes from the installed project package."""

from services.serving.endpoint import Preprocess

__all__ = ["Preprocess"]
