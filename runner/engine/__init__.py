"""The container engine behind one protocol, and what runner builds with it.

`backend` (the `Backend` protocol: containers, volumes, archives, images, the mount
check; `ContainerSpec` and its ledger digest; `Sidecars`, a backend that runs services), `clock` (the time deadlines and retries are
read on), `images` (`containers/<name>/Dockerfile` builds, tagged by content, within the
policy's rules) with `dockerfile` (the images a Dockerfile uses), `toolsets`
(pruned FROM-scratch images) with `catalog`, `elf` and `rootfs` (an exported image
filesystem, read offline), `lines` (a container's stdout and stderr merged by whole lines,
for every backend's reader). `docker/` implements `Backend` on the Docker API.
Everything here but `docker/` is engine-neutral and talks to the engine only through
`Backend`; only `runner.commands` (the composition root) picks an implementation.
May import: the base modules only. Nothing outside `engine/docker/` imports the `docker` SDK.
"""
