#!/usr/bin/env bash
# Create (or refresh) .venv with spikeforge and its pinned dependencies.
# Usage: scripts/setup-env.sh [--test]     (--test adds the test tools)
# Idempotent: reinstalls only when pyproject.toml is newer than the last install.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
with_tests=${1:-}

# System packages a fresh Debian 12 lacks: venv for Python, a C++ toolchain for Verilator builds.
missing=()
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v g++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "spikeforge setup: please install ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
    exit 2
  fi
fi

stamp="$venv/.installed${with_tests:+-test}"
if [[ ! -f $stamp || $root/pyproject.toml -nt $stamp ]]; then
  echo "spikeforge setup: installing into $venv (first run takes a few minutes)" >&2
  [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root${with_tests:+[test]}"
  if [[ -n $with_tests ]]; then
    # The LIF cross-check uses SpikingJelly 0.0.0.0.12 (the official code's version); --no-deps,
    # since its requirements would replace the pinned CPU torch.
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps spikingjelly==0.0.0.0.12
  fi
  touch "$stamp"
fi
