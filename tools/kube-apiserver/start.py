"""Start the cached kube-apiserver 1.20.2 and etcd on loopback, as the tests do, and keep them running
until Ctrl-C: for trying the autoscaler, kubectl or helm by hand against a real API server.

    make kube-apiserver                          # once: builds and caches the binary
    .venv/bin/python tools/kube-apiserver/start.py [--dir DIR]

It prints a kubeconfig for the cluster admin (``system:masters``) and one for a user named
``autoscaler`` (no permissions until you bind some). No kubelet or controllers: pods never start.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.autoscaler.kube import User, kube_apiserver, missing_tools


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, help="folder for certificates, tokens, etcd data, logs")
    args = parser.parse_args()
    missing = missing_tools()
    if missing:
        print("error: " + "\n       ".join(missing), file=sys.stderr)
        return 1
    folder = args.dir or Path(tempfile.mkdtemp(prefix="kube-apiserver-"))
    users = {"admin": User("admin", ("system:masters",)), "autoscaler": User("autoscaler")}
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with kube_apiserver(folder, users) as api:
        print(f"kube-apiserver v1.20.2 at {api.url} (logs and data in {folder})")
        print(f"  export KUBECONFIG={api.kubeconfig('admin')}          # cluster admin")
        print(f"  export KUBECONFIG={api.kubeconfig('autoscaler')}     # user 'autoscaler'")
        print("Ctrl-C stops it.", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
