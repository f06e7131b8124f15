#!/usr/bin/env bash
# Make Podman's Docker-compatible API answer on unix:///run/podman/podman.sock (rootful).
# Idempotent; leaves a running service alone. Installs Debian's podman and catatonit when
# podman is missing, then starts `podman system service --time=0` in the background and
# waits for its /_ping. Never stops a service it did not start.
# Point runner at it with: export DOCKER_HOST=unix:///run/podman/podman.sock
set -euo pipefail

socket=${PODMAN_SOCKET:-/run/podman/podman.sock}
log() { printf 'ensure-podman: %s\n' "$*" >&2; }
answers() { curl -sf --max-time 5 --unix-socket "$socket" http://d/_ping >/dev/null 2>&1; }

if [ -S "$socket" ] && answers; then
  exit 0
fi

if ! command -v podman >/dev/null 2>&1 || ! command -v catatonit >/dev/null 2>&1; then
  log "installing Debian's podman and catatonit"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq podman catatonit curl \
    || { apt-get update -qq && apt-get install -y -qq podman catatonit curl; }; } >/dev/null
fi
command -v curl >/dev/null 2>&1 || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq curl >/dev/null
}

if ! pgrep -f "podman system service --time=0 unix://$socket" >/dev/null 2>&1; then
  log "starting podman system service in the background (log: /var/log/runner-podman.log)"
  mkdir -p "$(dirname "$socket")"
  # a session of its own: a signal to the caller's process group (Ctrl-C, a CI job's
  # kill) does not stop the engine, which outlives the script by design
  # and from /, since it keeps its working directory: never a checkout that may be removed
  # (conmon then fails "Failed to get working directory" for every container)
  (
    cd /
    setsid nohup podman system service --time=0 "unix://$socket" >/var/log/runner-podman.log 2>&1 &
  )
fi

for _ in $(seq 1 120); do
  if answers; then
    log "service ready: DOCKER_HOST=unix://$socket"
    exit 0
  fi
  sleep 0.5
done
log "podman system service did not answer within 60 s; see /var/log/runner-podman.log"
exit 4
