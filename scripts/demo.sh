#!/usr/bin/env bash
# Set up .venv if needed, then run the end-to-end demo on the embedded digits data.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup-env.sh"
cd "$root"
exec "$root/.venv/bin/spikeforge" demo "$@"
