"""The Kubernetes backend's objects as data (runner.engine.kubernetes.manifests), and the
parts of its client layer that need no cluster: no cluster, no engine.

The hardening of SPEC 6 as pod spec, field by field; no environment value in any
manifest; labels Kubernetes accepts; egress kept off private ranges; an exec stream that
ends without its status is a failure, never exit 0.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from runner.engine.backend import LABEL_JOB, LABEL_RUN, LABEL_STATE, ContainerSpec
from runner.engine.kubernetes import manifests
from runner.engine.kubernetes.cluster import _exit_code
from runner.engine.kubernetes.images import normalized
from runner.engine.stepinit import contract
from runner.errors import PolicyDenied, RunnerError

OWNER = {"name": "runner-r1", "uid": "0000-1111"}
SECRET = "s3cr3t-'quoted'\\back\"slash"


def spec(**changes: Any) -> ContainerSpec:
    fields: dict[str, Any] = {
        "image": "runner-toolset:abc",
        "command": ["sh", "-e", "-c", "echo hi"],
        "env": {"TOKEN": SECRET, "PLAIN": "plain-env-7781"},
        "labels": {
            LABEL_RUN: "20261126-000000-abcdef",
            LABEL_STATE: "/a/very/long/state/dir/" + "x" * 80,
            LABEL_JOB: "build (os=linux, py=3.11)",
        },
        "memory_bytes": 256 * 1024 * 1024,
        "cpus": 1.5,
        "pids": 64,
        "workspace_volume": "runner-r1-ws",
        "deadline_s": 90.0,
    }
    fields.update(changes)
    return ContainerSpec(**fields)


def pod(**changes: Any) -> dict[str, Any]:
    return manifests.step_pod(
        "runner-r1-ws-1",
        spec(**changes),
        image="runner-toolset:abc",
        pull_policy="Never",
        owner=OWNER,
        workspace=("runner-r1-ws", "runner-r1-ws-tmp"),
        node="k8s-local",
    )


def test_a_step_pod_is_hardened_field_by_field() -> None:
    manifest = pod()
    spec_ = manifest["spec"]
    assert spec_["automountServiceAccountToken"] is False
    assert spec_["enableServiceLinks"] is False
    assert (spec_["hostNetwork"], spec_["hostPID"], spec_["hostIPC"]) == (False, False, False)
    assert spec_["shareProcessNamespace"] is False
    assert spec_["restartPolicy"] == "Never"
    assert spec_["activeDeadlineSeconds"] == 95  # runner-init's deadline, then the kubelet's
    assert spec_["securityContext"] == {
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "runAsNonRoot": True,
        "fsGroup": 65534,
        "supplementalGroups": [],
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = spec_["containers"]
    assert container["securityContext"] == {
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["resources"]["limits"] == {"memory": str(256 * 1024 * 1024), "cpu": "1500m"}
    assert container["resources"]["requests"]["memory"] == str(256 * 1024 * 1024)
    assert container["command"][: len(contract.argv(env_stdin=True, deadline_s=90.0))] == (
        contract.argv(env_stdin=True, deadline_s=90.0)
    )
    assert container["command"][-4:] == ["sh", "-e", "-c", "echo hi"]
    assert (container["stdin"], container["stdinOnce"], container["tty"]) == (True, True, False)
    assert "env" not in container and "envFrom" not in container
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[contract.DIRECTORY]["readOnly"] is True
    assert set(mounts) == {contract.DIRECTORY, "/workspace", "/tmp"}
    assert all("subPath" not in m for m in mounts.values())  # a subPath loses noexec
    kinds = [set(v) - {"name"} for v in spec_["volumes"]]
    assert kinds == [{"configMap"}, {"persistentVolumeClaim"}, {"persistentVolumeClaim"}]
    assert "hostPath" not in json.dumps(manifest)
    assert manifest["metadata"]["ownerReferences"][0]["uid"] == OWNER["uid"]


def test_no_environment_value_is_in_any_manifest() -> None:
    text = json.dumps(pod())
    assert "plain-env-7781" not in text  # neither PLAIN's value
    assert "s3cr3t" not in text and "TOKEN" not in text  # nor the secret, nor its name


def test_only_a_granted_workspace_and_an_accepted_termination_log_are_exempted() -> None:
    def exempted(manifest: dict[str, Any]) -> list[str]:
        words = manifest["spec"]["containers"][0]["command"]
        return [words[i + 1] for i, word in enumerate(words) if word == "--exec-mount"]

    assert exempted(pod()) == []
    assert exempted(pod(workspace_exec=True)) == ["/workspace"]
    accepted = manifests.step_pod(
        "p",
        spec(),
        image="i",
        pull_policy="Never",
        owner=OWNER,
        workspace=None,
        node=None,
        exec_mounts=[manifests.TERMINATION_LOG],
    )
    assert exempted(accepted) == [manifests.TERMINATION_LOG]


def test_root_and_non_limits_are_refused_before_any_manifest() -> None:
    with pytest.raises(PolicyDenied):
        pod(user=0)
    with pytest.raises(PolicyDenied):
        pod(memory_bytes=0)


def test_labels_are_what_kubernetes_accepts_and_the_rest_reads_back_merged() -> None:
    metadata = pod(network="runner-r1-net")["metadata"]
    labels = metadata["labels"]
    assert labels == {
        LABEL_RUN: "20261126-000000-abcdef",
        "runner.role": "step",
        manifests.LABEL_NETWORK: "runner-r1-net",
    }
    assert all(len(v) <= 63 for v in labels.values())
    merged = manifests.merged(metadata)
    assert merged[LABEL_STATE].endswith("x" * 80)
    assert merged[LABEL_JOB] == "build (os=linux, py=3.11)"


def test_deny_all_selects_the_run_and_egress_stays_off_private_ranges() -> None:
    deny = manifests.deny_all("d", {LABEL_RUN: "r1"}, OWNER, {LABEL_RUN: "r1"})
    assert deny["spec"] == {
        "podSelector": {"matchLabels": {LABEL_RUN: "r1"}},
        "policyTypes": ["Ingress", "Egress"],
    }
    kept = manifests.egress("n", {LABEL_RUN: "r1"}, OWNER, host_reachable=False)
    block = kept["spec"]["egress"][0]["to"][0]["ipBlock"]
    assert block["cidr"] == "0.0.0.0/0" and "169.254.0.0/16" in block["except"]
    assert "10.0.0.0/8" in block["except"]
    assert kept["spec"]["podSelector"] == {"matchLabels": {manifests.LABEL_NETWORK: "n"}}
    accepted = manifests.egress("n", {LABEL_RUN: "r1"}, OWNER, host_reachable=True)
    assert "except" not in accepted["spec"]["egress"][0]["to"][0]["ipBlock"]


def test_an_exec_stream_without_its_status_is_a_failure_never_exit_zero() -> None:
    assert _exit_code(b'{"metadata":{},"status":"Success"}', "w") == 0
    failed = {
        "status": "Failure",
        "details": {"causes": [{"reason": "ExitCode", "message": "2"}]},
    }
    assert _exit_code(json.dumps(failed).encode(), "w") == 2
    with pytest.raises(RunnerError, match="without an exit status"):
        _exit_code(b"", "w")
    with pytest.raises(RunnerError, match="container not found"):
        _exit_code(b'{"status":"Failure","message":"container not found"}', "w")


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("runner-toolset:abc", "docker.io/library/runner-toolset:abc"),
        ("runner-internal/init:1", "docker.io/runner-internal/init:1"),
        ("registry.local:5000/x/y:2", "registry.local:5000/x/y:2"),
        ("debian", "docker.io/library/debian:latest"),
    ],
)
def test_image_references_are_named_as_the_node_names_them(reference: str, expected: str) -> None:
    assert normalized(reference) == expected
