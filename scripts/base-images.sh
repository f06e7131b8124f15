#!/usr/bin/env bash
# Build the local base images that tests, the demo and containers/*/Dockerfile use,
# without any registry: no image can be pulled on this machine.
#   runner-base/busybox:latest  - busybox-static rootfs (~2 MB), for quick engine tests
#   debian:bookworm-slim        - debootstrap --variant=minbase bookworm rootfs
#   runner-internal/init:<hash> - runner-init, the entrypoint of every step, compiled from
#                                 runner/engine/stepinit/ (gcc from Debian's mirror, about
#                                 a minute), and the read-only volume steps mount it from
# When Podman's API answers (scripts/ensure-podman.sh), the same three go into Podman's own
# store too, copied from Docker's (`docker save | podman load`: no registry, no rebuild),
# and runner-init is made ready there too.
# Idempotent: an image that already exists is left alone.
set -euo pipefail

log() { printf 'base-images: %s\n' "$*" >&2; }
have() { docker image inspect "$1" >/dev/null 2>&1; }
need_pkg() {  # need_pkg COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  log "installing $2"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq "$2" || { apt-get update -qq && apt-get install -y -qq "$2"; }; } >/dev/null
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! have runner-base/busybox:latest; then
  need_pkg busybox busybox-static
  bb=$(command -v busybox)
  mkdir -p "$work/bb/bin" "$work/bb/tmp" "$work/bb/etc"
  cp "$bb" "$work/bb/bin/busybox"
  for applet in $("$work/bb/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$work/bb/bin/$applet"
  done
  chmod 1777 "$work/bb/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' >"$work/bb/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$work/bb/etc/group"
  tar -C "$work/bb" -c . | docker import -c 'CMD ["/bin/sh"]' - runner-base/busybox:latest >/dev/null
  log "built runner-base/busybox:latest"
fi

if ! have debian:bookworm-slim; then
  need_pkg debootstrap debootstrap
  log "debootstrap --variant=minbase bookworm (about 30-60 s)"
  debootstrap --variant=minbase bookworm "$work/deb" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$work/deb/var/cache/apt/archives/"*.deb "$work/deb/var/lib/apt/lists/"*
  chmod 1777 "$work/deb/tmp"
  tar -C "$work/deb" -c . | docker import -c 'CMD ["/bin/bash"]' - debian:bookworm-slim >/dev/null
  log "built debian:bookworm-slim"
fi

python="$(dirname "$0")/../.venv/bin/python"
prepare_init() {
  "$python" - <<'PY'
import sys
from runner.engine.docker.backend import connect

backend = connect()
try:
    backend.prepare_init(lambda line: print(f"base-images: {line}", file=sys.stderr))
finally:
    backend.close()
PY
}
if [ -x "$python" ]; then
  prepare_init
fi

podman_socket=/run/podman/podman.sock
if [ -x "$python" ] && command -v podman >/dev/null 2>&1 \
  && curl -sf --max-time 5 --unix-socket "$podman_socket" http://d/_ping >/dev/null 2>&1; then
  init=$("$python" -c 'from runner.engine.stepinit.image import tag; print(tag())')
  for image in runner-base/busybox:latest debian:bookworm-slim "$init"; do
    if ! podman image exists "$image"; then
      docker save "$image" | podman load -q >/dev/null
      log "copied $image into Podman's store"
    fi
  done
  DOCKER_HOST="unix://$podman_socket" prepare_init
fi
