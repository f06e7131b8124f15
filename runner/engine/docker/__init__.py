"""`Backend` on the Docker API (the local socket or `DOCKER_HOST`; Podman's API too):
`backend` (containers, volumes, runner-init's delivery; `connect`), `images` (build,
import, export, inspect, pull, tag, remove), `hardening` (the container configuration and
the seccomp profile), `networks` (per-job egress networks and the host firewall that keeps
them off the host), `sdk` (attach), `volume_dir` (workspace volumes used in place),
`errors` (SDK errors translated).
The only package that imports the `docker` SDK, and only the composition root
(`runner.commands`) imports it. May import: `runner.engine` and the base modules.
"""
