"""The pools' Deployments through the Kubernetes API (the ``kubernetes`` client): read the replicas
and the last change, scale through the ``scale`` subresource, mark pods with a deletion cost.

The chart's Role allows exactly that: ``get``/``patch`` on the pools' ``deployments`` and
``deployments/scale`` (by name), ``patch`` on ``pods`` of the namespace.
"""

from __future__ import annotations

from typing import Any

from services.autoscaler.reconcile import DELETION_COST, LAST_SCALED, PoolState


def load_client(kubeconfig: str | None = None) -> Any:
    """An ``ApiClient``: in-cluster (the pod's service account) or from ``kubeconfig``/``$KUBECONFIG``."""
    from kubernetes import client, config

    if kubeconfig is None:
        try:
            config.load_incluster_config()
            return client.ApiClient()
        except config.ConfigException:
            pass
    return config.new_client_from_config(config_file=kubeconfig)


class KubeCluster:
    def __init__(self, namespace: str, api_client: Any) -> None:
        from kubernetes import client

        self.namespace = namespace
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

    def read(self, deployment: str) -> PoolState:
        found = self.apps.read_namespaced_deployment(deployment, self.namespace)
        annotations = (found.metadata.annotations if found.metadata else None) or {}
        try:
            last = float(annotations[LAST_SCALED])
        except (KeyError, ValueError):
            last = None
        replicas = found.spec.replicas
        return PoolState(1 if replicas is None else int(replicas), last)

    def scale(self, deployment: str, replicas: int, now: float) -> None:
        self.apps.patch_namespaced_deployment_scale(
            deployment, self.namespace, {"spec": {"replicas": replicas}}
        )
        self.apps.patch_namespaced_deployment(
            deployment, self.namespace, {"metadata": {"annotations": {LAST_SCALED: f"{now:.3f}"}}}
        )

    def set_deletion_cost(self, pod: str, cost: int) -> bool:
        """False when the pod is gone (an agent outside the cluster, or a pod already removed)."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.patch_namespaced_pod(
                pod, self.namespace, {"metadata": {"annotations": {DELETION_COST: str(cost)}}}
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True
