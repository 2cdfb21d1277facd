"""``python -m services.local_server``: the same as ``occupancy-mlops local-server``."""

from occupancy_mlops.cli import app

if __name__ == "__main__":
    app(["local-server", *__import__("sys").argv[1:]])
