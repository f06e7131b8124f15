#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, starts a Docker
# engine if none answers, builds the local base images, starts the development Kubernetes
# of ../shared/k8s when it is there and does not answer yet (the Kubernetes backend's
# tests, marker `kubernetes`, run against it; without ../shared/k8s, against the cluster
# of $KUBECONFIG; with neither they are skipped, saying so), then lint, types and pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k ledger).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/ensure-docker.sh
# Podman's Docker API too (tests/podman, marker `podman`) when Podman is installed
# (scripts/ensure-podman.sh installs it): its service is started if none answers, and
# base-images.sh copies the images into it. Not installed: its tests are skipped, saying
# so; installed but down: they fail. Not installed by default: Podman 4.3's attach can
# drop the tail of a fast step's output (README, "On Podman"), so its tests are opt-in.
if command -v podman >/dev/null 2>&1; then
  scripts/ensure-podman.sh || echo "test.sh: Podman is not ready (see above)" >&2
fi
scripts/base-images.sh
if [ -x ../shared/k8s/up.sh ]; then
  # Started only when it does not answer already (kubectl's cache kept out of the repository).
  if ! /tmp/k8s/bin/kubectl --kubeconfig /tmp/k8s/kubeconfig/admin.kubeconfig \
      --cache-dir "${TMPDIR:-/tmp}/runner-tests-kubectl-cache" --request-timeout 5s \
      get --raw /readyz >/dev/null 2>&1; then
    ../shared/k8s/up.sh >/dev/null
  fi
elif [ -z "${KUBECONFIG:-}" ]; then
  echo "scripts/test.sh: no ../shared/k8s and no KUBECONFIG: the Kubernetes backend's tests are skipped"
fi
.venv/bin/ruff check runner tests bench
.venv/bin/ruff format --check runner tests bench
.venv/bin/mypy
.venv/bin/lint-imports --no-cache >/dev/null || .venv/bin/lint-imports --no-cache
# Two pytest workers (the machine's two cores; most of a container test is waiting on the
# engine): the suite with Podman and Kubernetes takes about 20 minutes serial, about 10 so.
# RUNNER_TEST_WORKERS=0 runs it serial. pytest exits 5 when it collected nothing: that fails
# here like any other failure.
exec .venv/bin/pytest -n "${RUNNER_TEST_WORKERS:-2}" "$@"
