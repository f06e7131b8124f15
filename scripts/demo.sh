#!/usr/bin/env bash
# The demo, from a fresh machine: installs what it needs, starts a Docker engine if none
# answers, builds the local base images, then validates, plans and runs the demo mission
# in real hardened containers, and verifies the signed audit ledger.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/ensure-docker.sh
scripts/base-images.sh
runner=.venv/bin/runner
set -x
"$runner" validate
"$runner" plan .missions/demo.yml
"$runner" policy check --explain .missions/demo.yml
"$runner" run .missions/demo.yml
"$runner" audit verify
