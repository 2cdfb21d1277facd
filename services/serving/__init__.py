"""The occupancy endpoint on the real clearml-serving inference app (see docs/serving.md)."""
