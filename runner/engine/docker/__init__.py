"""`Backend` on the Docker API (the local socket or `DOCKER_HOST`; Podman's API too):
`backend` (containers, volumes; `connect`), `images` (build, import, export, inspect, pull,
tag, remove), `hardening` (the container configuration and the seccomp profile),
`mount_check` (SPEC 6 against the kernel's mount table), `volume_dir` (a local workspace
volume's quota, layout and output files, used in place), `sdk` (the pinned private SDK
calls: attach, a cancellable build), `errors` (SDK errors translated).
The only package that imports the `docker` SDK, and only the composition root
(`runner.commands`) imports it. May import: `runner.engine` and the base modules.
"""
