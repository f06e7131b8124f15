"""`Backend` on the Docker API (the local socket or `DOCKER_HOST`; Podman's API too): the
hardened container configuration, volumes, the mount check, the seccomp profile.
The only package that imports the `docker` SDK. May import: `runner.engine` and the base modules.
"""
