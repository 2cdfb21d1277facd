"""A local ClearML server: the part of the ClearML REST API that clearml, clearml-agent and
clearml-serving use in this stack, with SQLite state and a file server on local disk.

For laptops, CI and demos where no real ClearML server can run. Not a production server: one
user, no web UI, no access control on the file server.
"""

from .runner import LocalServer, local_server, serve
from .settings import ServerSettings

__all__ = ["LocalServer", "ServerSettings", "local_server", "serve"]
