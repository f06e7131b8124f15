"""The Kubernetes backend, composed: the cluster of the current kubeconfig context (or
in-cluster), the local Docker engine that builds the images, their delivery
(`--image-registry` or `--load-images`), and the policy's `accept:` choices for what an
ordinary cluster cannot guarantee (README "Kubernetes").

Only `runner.cli` imports this module, and only when `--backend kubernetes` is chosen, so
that a Docker run never loads the Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Callable

from runner.app import App, Engine
from runner.engine.docker.backend import connect as connect_docker
from runner.engine.kubernetes.backend import KubernetesBackend, Settings
from runner.engine.kubernetes.cluster import connect as connect_cluster
from runner.engine.kubernetes.images import Delivery
from runner.errors import InvalidInput
from runner.policy.model import Policy

Connector = Callable[[App, Policy | None], KubernetesBackend]


def connector(engine: Engine) -> Connector:
    """How `run` (with the policy: images and steps) and `gc` (without: only removal)
    connect to the cluster `engine` names."""

    def connect(app: App, policy: Policy | None) -> KubernetesBackend:
        if policy is not None and not (engine.image_registry or engine.load_images):
            raise InvalidInput(
                "--backend kubernetes needs a way to deliver the step images: "
                "--image-registry PREFIX or --load-images CONTAINERD_SOCKET",
                hint="for ../shared/k8s: --load-images /tmp/k8s/containerd/containerd.sock",
            )
        if engine.image_registry and engine.load_images:
            raise InvalidInput("use one of --image-registry and --load-images, not both")
        settings = Settings(
            storage_class=engine.storage_class,
            exec_storage_class=engine.exec_storage_class or engine.storage_class,
            accept_unenforced_network_policy=(
                policy is not None and policy.accepts_unenforced_network_policy
            ),
            accept_executable_termination_log=(
                policy is not None and policy.accepts_executable_termination_log
            ),
            state_dir=str(app.state_dir.resolve()),
        )
        cluster = connect_cluster(engine.namespace)
        if policy is None:
            return KubernetesBackend(cluster, None, None, settings)
        try:
            images = connect_docker()
        except BaseException:
            cluster.close()
            raise
        backend = KubernetesBackend(cluster, images, None, settings)
        try:
            backend.delivery = Delivery(
                images, registry=engine.image_registry, socket=engine.load_images
            )
            app.out.line(f"runner: Kubernetes {cluster.server}, namespace {cluster.namespace}")
            backend.prepare(app.out.line)
        except BaseException:
            backend.close()
            raise
        return backend

    return connect
