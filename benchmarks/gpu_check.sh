#!/usr/bin/env bash
# Every GPU-only check in one script, for a lent H100/H200 (torch 2.11, transformers 5.17, python 3.12, no vllm,
# no network). CI never runs it: its tests are marked `gpu` and skip without CUDA.
#
#   bash benchmarks/gpu_check.sh            # from the repo root; logs and JSON results go to ${OUT:-runs/gpu_check}
#
# Missing wheels (deepspeed and its needs: hjson, pydantic, pydantic-core, annotated-types, typing-inspection,
# typing-extensions; jsonargparse, docstring-parser; xgrammar for the grammar test) travel in .whl/ (see
# /work/.library/device/README.md) and are installed into /tmp/site first.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/gpu_check}
mkdir -p "$out"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$(ls -d packages/*/src | paste -sd:)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
status=0
run() {  # name, command...: one check, its own log, never stops the others
  local name=$1; shift
  echo "== $name: $*"
  timeout 540 "$@" 2>&1 | tee "$out/$name.log" | tail -n 25
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc"
  [ "$rc" -eq 0 ] || status=1
}
run pytest_gpu python3 -m pytest -q -p no:cacheprovider -m gpu tests
run tools_bench python3 benchmarks/tools_bench.py --device cuda --repeats 9
run rewards_bench python3 benchmarks/rewards_bench.py --device cuda
run agent_bench python3 benchmarks/agent_bench.py --qwen3vl-8b-shapes --device cuda --batch 48 --json "$out/agent.json"
run trainer_step python3 benchmarks/trainer_gpu_step.py --strategy deepspeed
run trainer_step_zero3 python3 benchmarks/trainer_gpu_step.py --strategy deepspeed --zero-stage 3 --steps 1
exit $status
