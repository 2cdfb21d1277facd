"""The agent-pool autoscaler: scales each ClearML agent pool's Deployment on its queue's depth."""
