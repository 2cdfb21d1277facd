"""Labeling-tool integration: labeled files become dataset versions."""
