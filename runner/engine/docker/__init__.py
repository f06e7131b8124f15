"""`Backend` on the Docker API (the local socket or `DOCKER_HOST`; Podman's API too):
`backend` (containers, volumes, runner-init's delivery; `connect`), `images` (build,
import, export, inspect, pull, tag, remove), `hardening` (the container configuration and
the seccomp profile), `networks` (per-job egress networks and the host firewall that keeps
them off the host), `volume_dir` (a local workspace volume's quota, layout and output
files, used in place), `sdk` (the pinned private SDK calls: attach, a cancellable build),
`errors` (SDK errors translated).
The only package that imports the `docker` SDK, and only the composition root
(`runner.commands`) imports it. May import: `runner.engine` and the base modules.
"""
