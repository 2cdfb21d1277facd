"""One module per ClearML API service; each registers its endpoints in :data:`registry.ENDPOINTS`."""

from . import auth, events, models, projects, queues, server, tasks, workers

__all__ = ["auth", "events", "models", "projects", "queues", "server", "tasks", "workers"]
