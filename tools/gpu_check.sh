#!/usr/bin/env bash
# The GPU check of pfl in two halves (docs/performance.md, "The GPU check").
#
#   tools/gpu_check.sh prepare [DIR]              here, with a network: the wheels the GPU machine lacks
#                                                 (tools/gpu_wheels.py) into DIR (default .gpu_wheels/)
#   tools/gpu_check.sh run [--cpu] [--dry-run] [OUTDIR]
#                                                 there: install those wheels into /tmp/site, print the
#                                                 versions and nvidia-smi, run `pytest -m cuda`, then
#                                                 `python -m pfl.bench.gpu --json OUTDIR/gpu.json` with
#                                                 `nvidia-smi dmon` sampling into OUTDIR/dmon.txt
#
# run: OUTDIR defaults to $OUT (the device tool's result folder), else ./gpu_check_out. Every step has
# a time limit; together they end within GPU_CHECK_BUDGET seconds (default 470, under 8 minutes).
# At most 6 files are written: check.log, env.txt, pytest.log, bench.log, gpu.json, dmon.txt.
# --cpu: the same steps on a machine without a GPU (nvidia-smi and dmon skipped, the CUDA tests skip,
# the benchmark runs with --device cpu --tiny): a check of this script. --dry-run: print the steps only.
# PYTHON selects the interpreter (default python3). Exit status: the number of failed steps.
set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD
PY=${PYTHON:-python3}
WHEELS=${GPU_WHEELS:-.gpu_wheels}

prepare() {
    local dir=${1:-$WHEELS}
    mkdir -p "$dir" && rm -f "$dir"/*.whl
    "$PY" tools/gpu_wheels.py download "$dir" || return 1
    ls -l "$dir"
    du -sh "$dir"
}

# step NAME SECONDS LOG CMD...: CMD (a program or a function of this file) under a time limit (no more than
# what is left of the budget), its output also in OUTDIR/LOG unless LOG is -
step() {
    local name=$1 limit=$2 log=$3 left rc
    shift 3
    left=$((END - $(date +%s) - 5))
    ((limit > left)) && limit=$left
    echo "== $name (limit ${limit} s): $*"
    ((DRY)) && return 0
    if ((limit < 10)); then
        echo "== $name: skipped, the time budget is spent"
        FAILED+=("$name(no time)")
        return 1
    fi
    if [[ $log == - ]]; then
        timeout --kill-after=10 "$limit" bash -c '"$@"' "$name" "$@"
        rc=$?
    else
        timeout --kill-after=10 "$limit" bash -c '"$@"' "$name" "$@" 2>&1 | tee "$OUTDIR/$log"
        rc=${PIPESTATUS[0]}
    fi
    echo "== $name: exit $rc"
    ((rc == 0)) || FAILED+=("$name($rc)")
    return $rc
}

environment() {
    "$PY" - <<'EOF'
import importlib.metadata as md, platform, sys
import torch
print("python", platform.python_version(), sys.executable)
for name in ("torch", "pytorch-lightning", "torchmetrics", "hydra-core", "omegaconf", "antlr4-python3-runtime",
             "numpy", "h5py", "matplotlib", "pytest", "pytest-xdist", "nvidia-ml-py"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name} (not installed)")
print("cuda available", torch.cuda.is_available(), "| torch built for CUDA", torch.version.cuda)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device {p.name}, capability {p.major}.{p.minor}, {p.total_memory / 2**30:.1f} GiB, "
          f"{p.multi_processor_count} SMs; bf16 supported {torch.cuda.is_bf16_supported()}")
import antlr4, hydra, omegaconf, pfl.run  # the run's imports resolve (the carried wheels, Lightning)
print("pfl imports from", pfl.run.__file__, "| hydra from", hydra.__file__)
EOF
    ((CPU)) || nvidia-smi
}

bench() {
    local dmon=""
    if ((!CPU)); then
        nvidia-smi dmon -s um -o DT -d 1 >"$OUTDIR/dmon.txt" 2>&1 &
        dmon=$!
    fi
    "$PY" -m pfl.bench.gpu --json "$OUTDIR/gpu.json" "$@"
    local rc=$?
    [[ -n $dmon ]] && kill "$dmon" 2>/dev/null
    return $rc
}

run() {
    CPU=0 DRY=0 OUTDIR=${OUT:-gpu_check_out}
    while (($#)); do
        case $1 in
            --cpu) CPU=1 ;;
            --dry-run) DRY=1 ;;
            *) OUTDIR=$1 ;;
        esac
        shift
    done
    mkdir -p "$OUTDIR" && OUTDIR=$(cd "$OUTDIR" && pwd)
    END=$(($(date +%s) + ${GPU_CHECK_BUDGET:-470}))
    FAILED=()
    local site=/tmp/site tests=(-m cuda tests/gpu tests/engine/test_accelerator.py) bargs=()
    ((CPU)) && site=$(mktemp -d) && bargs=(--device cpu --tiny)
    ((CPU)) || bargs=(--repeats 2)
    export PY CPU OUTDIR PYTHONUNBUFFERED=1 WANDB_MODE=disabled
    export -f environment bench
    if compgen -G "$WHEELS/*.whl" >/dev/null; then
        step install 60 - "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$site" "$WHEELS"/*.whl
    else
        echo "== install: no wheels in $WHEELS (tools/gpu_check.sh prepare makes them); using what is installed"
    fi
    export PYTHONPATH=$REPO:$site${PYTHONPATH:+:$PYTHONPATH}
    step environment 120 env.txt environment
    # -n 8 --dist load: the CUDA tests spread over 8 processes that share the GPU
    local workers=(-n 8 --dist load)
    ((CPU)) && workers=(-n 0)
    step cuda-tests 170 pytest.log "$PY" -m pytest -p no:cacheprovider -q -rfEs "${workers[@]}" "${tests[@]}"
    step bench 330 bench.log bench "${bargs[@]}"
    ((CPU)) && rm -rf "$site"
    echo "== gpu_check: ${#FAILED[@]} failed step(s)${FAILED[*]:+: ${FAILED[*]}}; results in $OUTDIR"
    return ${#FAILED[@]}
}

case ${1:-} in
    prepare) shift; prepare "$@" ;;
    run)
        shift
        out=${OUT:-gpu_check_out}
        for a in "$@"; do
            case $a in
                --cpu | --dry-run) ;;
                -*) echo "gpu_check.sh run: unknown option $a (allowed: --cpu, --dry-run)" >&2; exit 2 ;;
                *) out=$a ;;
            esac
        done
        mkdir -p "$out"
        run "$@" 2>&1 | tee "$out/check.log"
        exit "${PIPESTATUS[0]}"
        ;;
    *) echo "usage: tools/gpu_check.sh prepare [DIR] | run [--cpu] [--dry-run] [OUTDIR]" >&2; exit 2 ;;
esac
