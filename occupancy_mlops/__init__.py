"""occupancy-mlops: a fully automatic retraining loop for an IoT room-occupancy model on ClearML."""

__version__ = "0.1.0"
