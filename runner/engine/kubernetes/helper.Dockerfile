# runner's Kubernetes helper image (runner/engine/kubernetes/images.py): GNU tar, cat,
# sleep and bash with their shared libraries, nothing else, FROM scratch. Keeper pods run
# `tar` in it to copy files in and out of a job's workspace; the network probe runs
# `bash` (/dev/tcp). Built by the local engine without network from a local base image.
FROM debian:bookworm-slim AS tools
RUN set -eu; mkdir /out; \
    for tool in /usr/bin/tar /usr/bin/cat /usr/bin/sleep /usr/bin/bash; do \
      cp --parents "$tool" /out; \
      ldd "$tool" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' \
        | while read -r lib; do cp --parents -L "$lib" /out; done; \
    done

FROM scratch
COPY --from=tools /out/ /
USER 65534:65534
