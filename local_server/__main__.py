"""``python -m local_server``: the same as ``occupancy-mlops local-server``."""

from .command import main

if __name__ == "__main__":
    main()
