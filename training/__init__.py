"""The training side of the loop: data → features → model → evaluate → pipeline."""
