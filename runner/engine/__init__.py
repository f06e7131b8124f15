"""The container engine behind a small protocol (`backend.Backend`), and what runner builds
with it: images from `containers/<name>/Dockerfile`, pruned toolset images (the tool
catalog, ELF closures, image filesystems). `docker/` is the Docker-API implementation.
May import: the base modules only. Nothing outside `engine/docker/` imports the `docker` SDK.
"""
