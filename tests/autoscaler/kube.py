"""A real kube-apiserver and etcd on loopback, for tests of the autoscaler's Kubernetes calls.

``kube-apiserver`` 1.20.2 is built from Debian bookworm's ``kubernetes`` source package by
``make kube-apiserver`` (``tools/kube-apiserver/build.sh``; ``make test`` runs it) and cached outside
the repository; ``etcd`` is Debian's ``etcd-server``. Everything runs in a temporary folder: TLS
certificates made with ``openssl`` (a CA and a serving certificate for 127.0.0.1), a static token file
(users and groups named by the caller), RBAC authorization. There is no kubelet, scheduler or
controller manager: objects are stored and served, pods never start.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

VERSION = "1.20.2"
CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "occupancy-mlops"
    / f"kube-apiserver-{VERSION}"
)
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
"""
HOW = "run `make kube-apiserver` (make test does; it builds Debian's kubernetes 1.20.2 source once)"


def kube_apiserver_bin() -> Path:
    """``$KUBE_APISERVER_BIN``, else the binary ``make kube-apiserver`` cached."""
    return Path(os.environ.get("KUBE_APISERVER_BIN") or CACHE / "kube-apiserver")


def etcd_bin() -> Path:
    return Path(os.environ.get("ETCD_BIN") or shutil.which("etcd") or "/usr/bin/etcd")


def missing_tools() -> list[str]:
    """What is missing to start the apiserver, each with how to get it."""
    missing = []
    if not os.access(kube_apiserver_bin(), os.X_OK):
        missing.append(f"{kube_apiserver_bin()} is missing: {HOW}")
    if not os.access(etcd_bin(), os.X_OK):
        missing.append(f"{etcd_bin()} is missing: apt-get install etcd-server (make kube-apiserver does)")
    if shutil.which("openssl") is None:
        missing.append("openssl is missing: apt-get install openssl (make kube-apiserver does)")
    return missing


@dataclass(frozen=True)
class User:
    """A static-token user: ``name`` and ``groups`` are what RBAC sees."""

    name: str
    groups: tuple[str, ...] = ()
    token: str = field(default_factory=lambda: secrets.token_hex(16))


@dataclass
class KubeApiserver:
    url: str
    ca_file: Path
    folder: Path
    users: dict[str, User]

    def kubeconfig(self, user: str) -> Path:
        """A kubeconfig file for one of the users (what an operator would hand the autoscaler)."""
        path = self.folder / f"kubeconfig-{user}.yaml"
        if not path.exists():
            config = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {"server": self.url, "certificate-authority": str(self.ca_file)},
                    }
                ],
                "users": [{"name": user, "user": {"token": self.users[user].token}}],
                "contexts": [{"name": user, "context": {"cluster": "local", "user": user}}],
                "current-context": user,
            }
            path.write_text(yaml.safe_dump(config))
            path.chmod(0o600)
        return path

    def client(self, user: str) -> Any:
        """A ``kubernetes.client.ApiClient`` for ``user``, loaded the way the autoscaler loads one."""
        from services.autoscaler.kube import load_client

        return load_client(str(self.kubeconfig(user)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(folder: Path) -> None:
    """``ca.crt``; ``server.crt``/``server.key`` for 127.0.0.1 and localhost, signed by it; ``sa.key``
    and ``sa.pub`` (service-account token signing). EC P-256 keys: quick to make."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=occupancy-mlops test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=kube-apiserver", cwd=folder
    )
    (folder / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "server.ext",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "sa.key", cwd=folder
    )
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=folder)


def _csv(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def write_token_file(path: Path, users: dict[str, User]) -> None:
    """kube-apiserver's ``--token-auth-file``: ``token,user,uid,"group1,group2"``."""
    lines = [f"{u.token},{_csv(u.name)},{_csv(u.name)},{_csv(','.join(u.groups))}" for u in users.values()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


class _Process:
    """A child process we started, its output in a log file; stopped by its own PID only."""

    def __init__(self, name: str, argv: Sequence[str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


def _wait(probe: Any, process: _Process, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        process.check()
        try:
            result = probe()
            if result is True:
                return
            last = str(result)
        except requests.RequestException as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s ({last}):\n{process.tail()}")


def _start_etcd(folder: Path, timeout: float) -> tuple[_Process, str]:
    client, peer = free_port(), free_port()
    url = f"http://127.0.0.1:{client}"
    peer_url = f"http://127.0.0.1:{peer}"
    etcd = _Process(
        "etcd",
        [
            str(etcd_bin()),
            "--name=test",
            f"--data-dir={folder / 'etcd'}",
            f"--listen-client-urls={url}",
            f"--advertise-client-urls={url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=test={peer_url}",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-level=warn",
        ],
        folder / "etcd.log",
    )

    def healthy() -> bool | str:
        res = requests.get(f"{url}/health", timeout=2)
        return (res.status_code == 200 and res.json().get("health") == "true") or res.text

    try:
        _wait(healthy, etcd, "etcd", timeout)
    except BaseException:
        etcd.stop()
        raise
    return etcd, url


def _start_apiserver(folder: Path, etcd_url: str, admin: User, timeout: float) -> tuple[_Process, str]:
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    apiserver = _Process(
        "kube-apiserver",
        [
            str(kube_apiserver_bin()),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            "--insecure-port=0",  # 1.20 still opens 127.0.0.1:8080 without authentication otherwise
            f"--cert-dir={folder / 'certs'}",
            f"--tls-cert-file={folder / 'server.crt'}",
            f"--tls-private-key-file={folder / 'server.key'}",
            f"--token-auth-file={folder / 'tokens.csv'}",
            "--anonymous-auth=false",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={folder / 'sa.pub'}",
            f"--service-account-signing-key-file={folder / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.96.0.0/24",
            # no controller manager makes the namespaces' default ServiceAccounts and their tokens
            "--disable-admission-plugins=ServiceAccount",
            # the `kubernetes` Service's endpoints may not be a loopback address
            "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            # who asked what, and what they were answered (tests read it)
            f"--audit-policy-file={folder / 'audit-policy.yaml'}",
            f"--audit-log-path={folder / 'audit.log'}",
            "--logtostderr",
        ],
        folder / "kube-apiserver.log",
    )
    auth = {"Authorization": f"Bearer {admin.token}"}

    def ready() -> bool | str:
        # verify per request: requests prefers $REQUESTS_CA_BUNDLE to a Session's own ``verify``
        res = requests.get(f"{url}/readyz", headers=auth, verify=str(folder / "ca.crt"), timeout=5)
        return res.status_code == 200 or f"/readyz {res.status_code}: {res.text[-500:]}"

    try:
        _wait(ready, apiserver, "kube-apiserver", timeout)
    except BaseException:
        apiserver.stop()
        raise
    return apiserver, url


@contextlib.contextmanager
def kube_apiserver(folder: Path, users: dict[str, User], timeout: float = 90) -> Iterator[KubeApiserver]:
    """etcd and kube-apiserver on free loopback ports, ready (``/readyz`` 200), stopped on exit.

    ``users["admin"]`` must exist; give it the group ``system:masters`` to act as cluster admin."""
    missing = missing_tools()
    if missing:
        raise FileNotFoundError("; ".join(missing))
    folder.mkdir(parents=True, exist_ok=True)
    make_certs(folder)
    write_token_file(folder / "tokens.csv", users)
    (folder / "audit-policy.yaml").write_text(AUDIT_POLICY)
    processes: list[_Process] = []
    try:
        for attempt in range(3):  # a free port can be taken by another process before we bind it
            try:
                etcd, etcd_url = _start_etcd(folder, timeout)
                processes.append(etcd)
                apiserver, url = _start_apiserver(folder, etcd_url, users["admin"], timeout)
                processes.append(apiserver)
                break
            except RuntimeError as exc:
                for process in reversed(processes):
                    process.stop()
                processes.clear()
                shutil.rmtree(folder / "etcd", ignore_errors=True)
                if attempt == 2 or "address already in use" not in str(exc):
                    raise
        yield KubeApiserver(url, folder / "ca.crt", folder, users)
    finally:
        for process in reversed(processes):
            process.stop()
