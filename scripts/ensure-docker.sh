#!/usr/bin/env bash
# Make a Docker engine answer on this machine. Idempotent; leaves a running engine alone.
# Installs Debian's docker.io when no dockerd exists, then starts dockerd in the
# background and waits for `docker info`. Never stops an engine it did not start.
set -euo pipefail

log() { printf 'ensure-docker: %s\n' "$*" >&2; }

if docker info >/dev/null 2>&1; then
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  log "no Docker engine installed; installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq docker.io >/dev/null
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
  log "starting dockerd in the background (log: /var/log/runner-dockerd.log)"
  # a session of its own: a signal to the caller's process group (Ctrl-C, a CI job's
  # kill) does not stop the engine, which outlives the script by design
  # and from /, since it keeps its working directory: never a checkout that may be removed
  (
    cd /
    setsid nohup dockerd >/var/log/runner-dockerd.log 2>&1 &
  )
fi

for _ in $(seq 1 120); do
  if docker info >/dev/null 2>&1; then
    log "engine ready"
    exit 0
  fi
  sleep 0.5
done
log "dockerd did not answer within 60 s; see /var/log/runner-dockerd.log"
exit 4
