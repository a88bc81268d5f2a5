#!/usr/bin/env bash
# The GPU checks of issue 18 (and the gpu-marked tests), as ONE prepared run for a lent device machine.
#
# A lent machine has torch with CUDA but no internet and none of msakit's Mamba / OT extras, so the
# pure-Python wheels travel with the working tree. Here, before the device call:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps -d .whl mambapy geomloss
#
# then one `run` call with carry [".whl"] and a timeout that leaves time for a rerun (about 420 s):
#
#   bash scripts/device_check.sh
#
# Everything it measures lands under $OUT (or device-out/ when $OUT is unset, as in a dry run here):
# log (every step's output and exit status), mamba_scaling_gpu.json, gpu.json. Each step has its own time box, so one that
# hangs costs its box and not the run. Without CUDA every CUDA step says so in one line and is skipped,
# which is how the script is checked on a CPU machine (tests/test_device_check.py).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-device-out}"
mkdir -p "$out"
exec > >(tee -a "$out/log") 2>&1

step() {  # step NAME SECONDS COMMAND...: run COMMAND under a time box; report its exit status
  local name=$1 box=$2
  shift 2
  echo "== $name (time box ${box} s)"
  local start=$SECONDS
  timeout "$box" "$@"
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - start)) s"
}

if compgen -G ".whl/*.whl" >/dev/null; then
  step "install carried wheels" 120 python3 -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target /tmp/msakit-site .whl/*.whl
  export PYTHONPATH="/tmp/msakit-site:src${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1

step "device" 30 bash -c 'nvidia-smi || echo "nvidia-smi: not found"'
step "torch" 60 python3 -c '
import importlib.util, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0))
for name in ("mambapy", "mamba_ssm", "geomloss"):
    print(name, "installed" if importlib.util.find_spec(name) else "missing")
'
if ! python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "== no CUDA device: the CUDA steps are skipped"
  exit 0
fi

# the gpu-marked tests: the mambapy scan on CUDA against the sequential reference, the mamba_ssm
# kernel against it (skips unless mamba_ssm is installed), and the GPU training-step benchmark's test
step "gpu tests" 180 python3 -m pytest -m gpu -p no:cacheprovider -rs tests/test_mamba.py tests/test_speed.py
# issue 18's length-scaling benchmark, the CUDA column (14 subprocesses)
step "mamba length scaling" 240 python3 benchmarks/mamba_scaling.py --device cuda --out "$out/mamba_scaling_gpu.json"
# one training step per model on the device: time, peak memory, share of the matmul throughput
step "training step" 180 python3 benchmarks/gpu_bench.py --models late_fusion tfn mult tecafn alignmamba2 \
  --steps 10 --json "$out/gpu.json"
echo "== done"
