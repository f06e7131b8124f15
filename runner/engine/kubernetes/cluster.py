"""The cluster's API through the official `kubernetes` client: the connection, its
errors as runner's, and the two streams runner opens into pods.

`connect(namespace)` uses the current kubeconfig context (`KUBECONFIG`, else
~/.kube/config) or, inside a pod, the in-cluster configuration; a cluster that does not
answer is `EngineUnavailable` (exit 4) saying which server and how to point runner at
another. `api_errors(what)` turns the client's exceptions into `RunnerError`s that name
what runner was doing and what the API server said (a missing RBAC verb reads as
"forbidden: ... cannot create resource pods", with the Role to apply).

Streams (`attach`, `run`): websockets through the API server to the kubelet, read as
bytes. `attach` is a step's stdin (runner-init's environment) and its output (stdout and
stderr merged by whole lines, `runner.engine.lines`), opened before the step can run
(runner-init waits for its environment), so nothing it prints is missed. `run` runs a
command in a pod (`pods/exec`) with its stdin streamed in and its stdout streamed out;
its exit status comes from the API server's status message, and a stream that ends
without one is an error, never a success. A step's exit code never comes from a stream:
the backend reads it from the pod's status.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.stream import stream
from websocket import ABNF, WebSocketException

from runner.engine.backend import NotFound
from runner.engine.lines import LineAligner
from runner.errors import EngineUnavailable, RunnerError

KIND_NAMES = {
    "pod": "pod",
    "claim": "PersistentVolumeClaim",
    "configmap": "ConfigMap",
    "policy": "NetworkPolicy",
}
POOL_SIZE = 64
REQUEST_TIMEOUT_S = 60.0
STDOUT, STDERR, ERROR_CHANNEL = 1, 2, 3
STDIN_FRAME = 256 * 1024
STDERR_MAX = 64 * 1024
ROLE_HINT = "apply docs/kubernetes/role.yaml to the namespace and bind it to runner's user"
CONNECT_HINT = (
    "point KUBECONFIG at a kubeconfig whose current context is the cluster "
    "(e.g. ../shared/k8s/up.sh, then KUBECONFIG=/tmp/k8s/kubeconfig/admin.kubeconfig)"
)


class Conflict(RunnerError):
    """An object that already exists."""


@dataclass
class Cluster:
    """The APIs runner uses, in one namespace."""

    namespace: str
    api: client.ApiClient
    core: client.CoreV1Api
    networking: client.NetworkingV1Api
    server: str
    configuration: client.Configuration

    @contextlib.contextmanager
    def streaming(self) -> Iterator[client.CoreV1Api]:
        """A client of its own for opening one stream: the client's `stream()` swaps
        its ApiClient's transport while it connects, so a shared one would send other
        threads' requests over websockets."""
        api = client.ApiClient(self.configuration)
        try:
            yield client.CoreV1Api(api)
        finally:
            cast(Any, api).close()

    def close(self) -> None:
        cast(Any, self.api).close()

    # The client's generated methods are typed for its model classes; runner's manifests
    # are plain dicts (`manifests`), which the client serializes as they are.

    def create(self, kind: str, body: Mapping[str, Any]) -> str:
        """Create the object `body` of `kind` (pod, claim, policy, configmap); its uid."""
        name = body["metadata"]["name"]
        method = {
            "pod": self.core.create_namespaced_pod,
            "claim": self.core.create_namespaced_persistent_volume_claim,
            "configmap": self.core.create_namespaced_config_map,
            "policy": self.networking.create_namespaced_network_policy,
        }[kind]
        with api_errors(f"creating {KIND_NAMES[kind]} {name}"):
            made = cast(Any, method)(self.namespace, dict(body))
        return str(made.metadata.uid)

    def listed(self, kind: str, selector: str) -> list[tuple[str, dict[str, Any]]]:
        """(name, metadata as a dict) of the objects of `kind` `selector` selects."""
        method = {
            "pod": self.core.list_namespaced_pod,
            "claim": self.core.list_namespaced_persistent_volume_claim,
            "configmap": self.core.list_namespaced_config_map,
            "policy": self.networking.list_namespaced_network_policy,
        }[kind]
        with api_errors(f"listing the {KIND_NAMES[kind]}s labelled {selector}"):
            items = cast(Any, method(self.namespace, label_selector=selector)).items
        return [(str(item.metadata.name), item.metadata.to_dict()) for item in items]

    def delete(self, kind: str, name: str) -> None:
        """Delete an object at once (pods get no grace); a missing one is fine."""
        method = {
            "pod": self.core.delete_namespaced_pod,
            "claim": self.core.delete_namespaced_persistent_volume_claim,
            "configmap": self.core.delete_namespaced_config_map,
            "policy": self.networking.delete_namespaced_network_policy,
        }[kind]
        options = client.V1DeleteOptions(
            grace_period_seconds=0 if kind == "pod" else None, propagation_policy="Background"
        )
        with contextlib.suppress(NotFound), api_errors(f"deleting {KIND_NAMES[kind]} {name}"):
            method(name, self.namespace, body=options)

    def pod(self, name: str) -> Any:
        """The pod `name` as the API server has it (its status)."""
        with api_errors(f"reading the status of pod {name}"):
            return self.core.read_namespaced_pod(name, self.namespace)

    def version(self) -> str:
        with api_errors("asking the cluster its version"):
            info = client.VersionApi(self.api).get_code(_request_timeout=REQUEST_TIMEOUT_S)
        return str(info.git_version)


def connect(namespace: str | None) -> Cluster:
    """The cluster of the current kubeconfig context (or in-cluster), in `namespace`
    (default: the context's namespace, else `default`), checked to answer."""
    configuration = client.Configuration()
    context_namespace = "default"
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
            cast(Any, config).load_incluster_config(client_configuration=configuration)
            served = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            with contextlib.suppress(OSError):
                context_namespace = served.read_text().strip() or context_namespace
        else:
            loader = cast(Any, config)
            where = os.environ.get("KUBECONFIG") or "~/.kube/config"  # as it is now
            loader.load_kube_config(config_file=where, client_configuration=configuration)
            _, active = loader.list_kube_config_contexts(config_file=where)
            context_namespace = (active or {}).get("context", {}).get(
                "namespace"
            ) or context_namespace
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        raise EngineUnavailable(
            f"no Kubernetes cluster is configured: {exc}", hint=CONNECT_HINT
        ) from exc
    configuration.connection_pool_maxsize = POOL_SIZE
    configuration.retries = 0
    api = client.ApiClient(configuration)
    cluster = Cluster(
        namespace=namespace or context_namespace,
        api=api,
        core=client.CoreV1Api(api),
        networking=client.NetworkingV1Api(api),
        server=str(configuration.host),
        configuration=configuration,
    )
    try:
        cluster.version()
    except BaseException:
        cast(Any, api).close()
        raise
    return cluster


@contextlib.contextmanager
def api_errors(what: str) -> Iterator[None]:
    """The client's exceptions as RunnerErrors naming `what` runner was doing."""
    try:
        yield
    except ApiException as exc:
        raise translate(exc, what) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise EngineUnavailable(
            f"the Kubernetes API server does not answer while {what}: {exc}", hint=CONNECT_HINT
        ) from exc


def translate(exc: ApiException, what: str) -> RunnerError:
    status = int(exc.status or 0)
    message = _message(exc)
    if status == 404:
        return NotFound(f"{what}: not found ({message})")
    if status == 409:
        return Conflict(f"{what}: {message}")
    if status in (401, 403):
        return RunnerError(f"{what}: the cluster refused: {message}", hint=ROLE_HINT)
    if status == 0 or status >= 500:
        return EngineUnavailable(f"the Kubernetes API server failed while {what}: {message}")
    return RunnerError(f"{what}: {message}")


def _message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return str(exc.reason or exc.body or exc)
    return str(body.get("message") or exc.reason) if isinstance(body, dict) else str(exc.reason)


def missing_ok(exc: RunnerError) -> bool:
    return isinstance(exc, NotFound)


def _frames(ws: Any) -> Iterator[tuple[int, bytes]]:
    """(channel, data) of each frame until the server closes the stream; the websocket's
    own `recv_data_frame`, so that bytes stay bytes and stdout and stderr keep their order."""
    while True:
        opcode, frame = ws.sock.recv_data_frame(True)
        if opcode == ABNF.OPCODE_CLOSE:
            return
        if opcode in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT) and frame.data:
            data = bytes(frame.data)
            yield data[0], data[1:]


def _hang_up(ws: Any) -> None:
    """Close stream `ws` and its socket. Once the server's close frame has arrived the
    websocket client counts itself closed and its `close` does nothing, which left the
    socket open until the garbage collector found it (one per step and per copy): shut
    the socket here whatever state the stream is in."""
    with contextlib.suppress(Exception):
        ws.close()
    with contextlib.suppress(Exception):
        ws.sock.shutdown()


class Attached:
    """A step's attach stream: `send` writes runner-init's environment on its stdin,
    `output` yields what it prints until the container's streams close: stdout and stderr
    merged by whole lines (`runner.engine.lines`: a stream's partial line waits for its
    newline, so it never glues onto a line of the other), then their unterminated ends."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self._lock, contextlib.suppress(Exception):
            self._ws.write_stdin(data)

    def output(self) -> Iterator[bytes]:
        lines = LineAligner()
        broke: Exception | None = None
        try:
            for channel, data in _frames(self._ws):
                if channel in (STDOUT, STDERR) and data:
                    whole = lines.feed(channel, data)
                    if whole:
                        yield whole
        except (WebSocketException, OSError) as exc:
            broke = exc  # what was held is still output: passed on first
        finally:
            self.close()
        rest = lines.finish()
        if rest:
            yield rest
        if broke is not None:
            raise RunnerError(f"the output stream broke: {broke}") from broke

    def close(self) -> None:
        _hang_up(self._ws)


def attach(cluster: Cluster, pod: str, container: str) -> Attached:
    """Attach to `container` of `pod` (stdin, stdout, stderr; no TTY)."""
    with api_errors(f"attaching to pod {pod}"), cluster.streaming() as core:
        ws = stream(
            core.connect_get_namespaced_pod_attach,
            pod,
            cluster.namespace,
            container=container,
            stdin=True,
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
            binary=True,
        )
    return Attached(ws)


@dataclass
class Ran:
    code: int
    stderr: bytes


def run(
    cluster: Cluster,
    pod: str,
    container: str,
    command: list[str],
    *,
    stdin: Iterable[bytes] | None = None,
    out: Callable[[bytes], None] | None = None,
) -> Ran:
    """Run `command` in `container` of `pod`: `stdin` streamed in, stdout handed to `out`
    chunk by chunk (None: discarded). The exit code comes from the API server's status
    message; a stream that ends without one is an error."""
    what = f"running {command[0]} in pod {pod}"
    with api_errors(what), cluster.streaming() as core:
        ws = stream(
            core.connect_get_namespaced_pod_exec,
            pod,
            cluster.namespace,
            container=container,
            command=command,
            stdin=stdin is not None,
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
            binary=True,
        )
    status = b""
    stderr = bytearray()
    try:
        if stdin is not None:
            for chunk in stdin:
                for at in range(0, len(chunk), STDIN_FRAME):
                    ws.write_stdin(bytes(chunk[at : at + STDIN_FRAME]))
        for channel, data in _frames(ws):
            if channel == STDOUT and out is not None:
                out(data)
            elif channel == STDERR and len(stderr) < STDERR_MAX:
                stderr += data
            elif channel == ERROR_CHANNEL:
                status += data
    except (WebSocketException, OSError) as exc:
        raise RunnerError(f"{what}: the stream broke: {exc}") from exc
    finally:
        _hang_up(ws)
    return Ran(_exit_code(status, what), bytes(stderr))


def _exit_code(status: bytes, what: str) -> int:
    try:
        document = json.loads(status)
    except ValueError:
        raise RunnerError(f"{what}: the stream ended without an exit status") from None
    if document.get("status") == "Success":
        return 0
    for cause in (document.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            return int(cause.get("message"))
    raise RunnerError(f"{what}: {document.get('message') or 'failed'}")
