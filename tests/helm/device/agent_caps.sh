#!/bin/bash
# Run on a GPU machine from the repository root (root, util-linux setpriv, nvidia-ml-py installed):
#   bash tests/helm/device/agent_caps.sh
# Does the agent read the GPU through NVML (a) as uid 0 with every capability dropped (the chart's
# default agent securityContext) and (b) as uid 65532 with none (agent-only values / systemd DynamicUser)?
set -u
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site "$PWD" >/tmp/pip.log 2>&1 || { tail -5 /tmp/pip.log; exit 1; }
export PYTHONPATH=/tmp/site
cp tests/helm/device/agent_main.py /tmp/; chmod 644 /tmp/agent_main.py
cd /tmp  # the checkout's gpulens/ folder would shadow the installed package
nvidia-smi -L; uname -r; id
ls -l /dev/nvidia* 2>&1 | head -8
command -v setpriv capsh
grep Cap /proc/self/status
probe() { # $1 label, rest: prefix command
  local label=$1; shift
  local port=$((20000 + RANDOM % 20000)) dir=/tmp/gl-$label
  mkdir -p $dir && chmod 0777 $dir
  "$@" python3 /tmp/agent_main.py agent --backend nvml --host 127.0.0.1 --port $port --interval 0.5 --socket $dir/agent.sock --node devnode >$dir/log 2>&1 &
  local pid=$!
  python3 - "$port" "$label" <<'PY'
import sys, time, urllib.request
port, label = sys.argv[1], sys.argv[2]
for _ in range(60):
    try:
        h = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status
        break
    except Exception:
        time.sleep(0.5)
else:
    print(label, "FAIL: no /healthz"); sys.exit(0)
time.sleep(2)
m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
lines = [l for l in m.splitlines() if l.startswith(("gpulens_gpu_up", "gpulens_gpu_utilization_ratio", "gpulens_gpu_power_watts", "gpulens_gpu_sm_active_ratio", "gpulens_agent_info"))]
print(label, "healthz", h, "series", len([l for l in m.splitlines() if l and not l.startswith("#")]))
print("\n".join(lines[:6]))
PY
  grep -v "^$" /proc/$pid/status 2>/dev/null | grep -E "^(Uid|CapEff|CapPrm|CapBnd)" | sed "s/^/$label proc /"
  kill $pid; wait $pid 2>/dev/null
  tail -3 $dir/log | sed "s/^/$label log: /"
}
probe root-nocaps setpriv --inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs
probe uid65532-nocaps setpriv --reuid=65532 --regid=65532 --clear-groups --inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs
