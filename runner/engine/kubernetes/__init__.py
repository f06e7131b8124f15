"""The Kubernetes backend: runner's steps as pods on an existing cluster (SPEC 10).

`backend` (`KubernetesBackend`: every step a pod, every job two claims and a keeper pod,
everything of a run owned by its ConfigMap), `manifests` (every object as data: the
hardening of SPEC 6 as pod spec), `cluster` (the official client: connection, errors,
the attach and exec streams), `images` (delivery of the locally built images: pushed to
a registry and pinned by digest, or loaded into a development node; runner's helper
image). The README's "Kubernetes" section says why the pods have this shape and what a
cluster must provide.
May import: `runner.engine.backend`, `runner.engine.stepinit` and the base modules. Only
this package imports the `kubernetes` client, and only `runner.commands` imports it.
"""
