"""runner-init: the entrypoint runner provides to every step container, and its image.

`runner-init.c` (package data) is PID 1 of each step: it takes the step's environment
from stdin (so no value is in the container's configuration), refuses a writable and
executable mount before the step can run, reaps zombies, forwards signals and kills the
whole container at a deadline, so that steps die with a killed runner, and (with
`--trailer`) ends stdout and stderr with a per-container trailer, exiting only once runner
acked it, so that no engine can drop the end of a step's output unseen. `contract` is what
runner and the program agree on (its arguments, the environment's wire format, the
trailer, its exit codes and refusal line); `trailer` strips the trailer from the streams
and says whether both ended with it; `image` builds the program through the `Backend`
into a `FROM scratch` image tagged by the hash of its source, once per engine. How the
program gets into a container is each backend's business (Docker: a read-only volume
seeded from that image, `runner.engine.docker.backend`).
May import: `runner.engine.backend` and the base modules.
"""
