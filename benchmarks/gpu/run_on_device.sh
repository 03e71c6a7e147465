#!/usr/bin/env bash
# One prepared run on a lent H100/H200 (see BENCHMARKS.md): the NVML backend of the agent and the
# trainer's no-sync step timing. The device image has torch, nvidia-ml-py and prometheus-client
# but nothing can be installed there, so gpulens is put on PYTHONPATH through a shim that mirrors
# the setup.py package mapping (component folders -> gpulens.<component>).
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpulens-device-out}; mkdir -p "$OUT"
SHIM=/tmp/gpulens-shim; rm -rf "$SHIM"; mkdir -p "$SHIM"
cp -r gpulens "$SHIM/gpulens"
for c in collector trainer attribution dashboards remediation; do ln -s "$PWD/$c" "$SHIM/gpulens/$c"; done
export PYTHONPATH="$SHIM" PYTHONUNBUFFERED=1
REPO=$PWD; cd "$SHIM"  # so that `python -m gpulens` finds the shim, not the repository's gpulens/ folder
{
  echo "== host"; date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, pynvml, prometheus_client; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  echo "== agent --backend nvml"
  timeout 120 python3 "$REPO/benchmarks/gpu/agent_nvml_check.py"; echo "rc=$?"
  echo "== trainer no-sync check"
  timeout 300 python3 "$REPO/benchmarks/gpu/trainer_sync_check.py"; echo "rc=$?"
} 2>&1 | tee "$OUT/device-checks.log"
