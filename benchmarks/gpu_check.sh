#!/usr/bin/env bash
# GPU checks of the verification harness and the fork server, for a machine with an
# NVIDIA GPU and a CUDA build of torch (not part of CI, which has no GPU).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]
#
# Needs click, networkx, numpy and libcst importable beside that torch (a libcst wheel
# in .whl/ is installed first when present); installs bnlint itself in editable mode.
# Each step has its own time limit so one slow step cannot starve the others.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-/tmp/bnlint-gpu}}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
step() { echo; echo "=== $1 ($(date +%T))"; }

step "machine"
nvidia-smi -L
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'bf16', torch.cuda.is_bf16_supported())"
nproc

step "install"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps .whl/*.whl || exit 1
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
python3 -m bnlint --version

step "verify harness tests (CUDA is the default device where available)"
timeout 150 python3 -m pytest -q -x -p no:cacheprovider tests/test_verify.py tests/test_verify_units.py 2>&1 | tail -15

step "bnlint verify on CUDA (autocast): dropout before BN vs after, and a cosmetic change"
timeout 120 python3 -m bnlint verify fixtures/verify/mlp_dropout_before_bn.py fixtures/verify/mlp_dropout_after_bn.py \
  --device cuda --seeds 3 --report "$OUT/verify_mlp.json"; echo "exit $?"
timeout 90 python3 -m bnlint verify fixtures/verify/mlp_dropout_before_bn.py fixtures/verify/mlp_cosmetic_change.py \
  --device cuda --seeds 3; echo "exit $?"

step "benchmark: variance shift on CUDA"
timeout 150 python3 benchmarks/verify_variance_shift.py 2>&1 | tee "$OUT/variance_shift.txt"

step "fork server vs one process per file (CUDA build of torch), 16 model files"
P="fixtures/BNL101 fixtures/BNL102 fixtures/models_clean"
for mode in 1 0; do
  start=$(date +%s.%N)
  BNLINT_FORKSERVER=$mode timeout 200 python3 -m bnlint check --no-cache $P > "$OUT/check_fs$mode.txt" 2>&1
  end=$(date +%s.%N)
  echo "BNLINT_FORKSERVER=$mode: $(echo "$end - $start" | bc) s, $(tail -1 "$OUT/check_fs$mode.txt")"
done
cmp "$OUT/check_fs1.txt" "$OUT/check_fs0.txt" && echo "same findings"

step "zoo: torchvision + timm with this machine's versions, all CPUs"
timeout "${ZOO_LIMIT:-200}" python3 benchmarks/zoo.py --timm-sample 40 --out "$OUT/zoo.json" 2>&1 | tail -12
echo "done $(date +%T)"
