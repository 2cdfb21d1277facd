"""``python -m services.labeling sync|watch DIR``: the same as ``occupancy-mlops label``."""

from services.labeling.cli import label_app

if __name__ == "__main__":
    label_app(prog_name="python -m services.labeling")
