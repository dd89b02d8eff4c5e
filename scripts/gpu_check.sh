#!/usr/bin/env bash
# One command for the checks that need a GPU, printing one Markdown report (also written to
# gpu_check.md, or --out FILE). Sized to finish in under 8 minutes on one H100-class GPU:
#
#   1. the GPU-marked tests (pytest -m gpu);
#   2. the speed benchmark on CUDA for every model in fp32, bf16-mixed and with compile=true,
#      each beside its bare loop (scripts/benchmark.py);
#   3. a full default ConvNet run through src.train (5,000 steps, every evaluation), with its
#      wall time and test accuracy;
#   4. a profiler check that no training step copies data from host memory
#      (scripts/check_host_copies.py).
#
# Usage:
#   scripts/gpu_check.sh [--data-root DIR] [--out FILE]   # on a GPU machine, CIFAR-10 in DIR
#   scripts/gpu_check.sh --dry-run                        # every step on the CPU, tiny and on
#                                                         # synthetic data: checks the script
# Without CIFAR-10 in --data-root (default: data), and in a dry run, the steps run on synthetic
# data (data=fake) and the report says so: the timings stand, the accuracy does not.
set -uo pipefail
cd "$(dirname "$0")/.."

dry_run=false
data_root=data
out=gpu_check.md
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) dry_run=true ;;
        --data-root) data_root="$2"; shift ;;
        --out) out="$2"; shift ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if $dry_run; then
    device=cpu
else
    if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "error: no CUDA device visible to torch; use --dry-run to check the script on a CPU" >&2
        exit 2
    fi
    device=cuda
fi

if ! $dry_run && [[ -d "$data_root/cifar-10-batches-py" ]]; then
    data_args=(--data-root "$data_root"); train_data=(data.root="$data_root" data.download=false)
    data_note="CIFAR-10 from $data_root"
else
    data_args=(--fake); train_data=(data=fake)
    data_note="synthetic data (dry run, or no CIFAR-10 in $data_root): accuracies are meaningless"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
section() { printf '\n## %s\n\n' "$1" >>"$out"; }
run_step() {  # run_step NAME CMD...: append its output to the report, remember a failure
    local name=$1; shift
    echo ">>> $name: $*" >&2
    if ! "$@" >"$work/step.log" 2>&1; then failed+=("$name"); fi
    cat "$work/step.log" >&2
}

started=$(date +%s)
{
    echo "# GPU check ($(date -u +'%Y-%m-%d %H:%M UTC'))"
    echo
    echo "- git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
    echo "- device: $(python -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU (dry run)')")"
    echo "- torch $(python -c 'import torch; print(torch.__version__)'), data: $data_note"
} >"$out"

# 1. GPU-marked tests (on a CPU, a dry run only lists them).
section "GPU tests"
if $dry_run; then
    run_step "gpu tests" python -m pytest -q -m gpu --collect-only
else
    run_step "gpu tests" python -m pytest -q -m gpu
fi
grep -E "::|passed|failed|skipped|collected|error" "$work/step.log" | sed 's/^/    /' >>"$out"

# 2. The benchmark, per precision / compile, each model beside its bare loop.
if $dry_run; then
    bench_size=(--fake --models mlp_numpy,mlp --steps 2 --warmup 1 --repeats 1
                --eval-repeats 1 --startup-repeats 0 --no-eval-share --threads 1
                --whole-run-repeats 0)
    variants=("32-true")  # compile and bf16 on a CPU take minutes and test nothing of the GPU
else
    bench_size=("${data_args[@]}" --repeats 3 --startup-repeats 1)
    # Whole runs (subprocesses of 200 and 3,200 steps: the fixed cost per step) once, in fp32.
    variants=("32-true --whole-run-repeats 1" "bf16-mixed --whole-run-repeats 0"
              "32-true --compile --whole-run-repeats 0")
fi
for variant in "${variants[@]}"; do
    read -r precision extra <<<"$variant"
    section "Benchmark: precision $precision ${extra:-}"
    # shellcheck disable=SC2086
    run_step "benchmark $variant" python scripts/benchmark.py --device "$device" \
        --precision "$precision" $extra "${bench_size[@]}" --output "$work/bench.md"
    if [[ -f "$work/bench.md" ]]; then cat "$work/bench.md" >>"$out"; rm "$work/bench.md"; fi
done

# 3. The default ConvNet, end to end through the entry point.
section "Default ConvNet through src.train"
if $dry_run; then
    convnet=(model=convnet "${train_data[@]}" trainer.accelerator=cpu trainer.max_steps=2
             trainer.val_check_interval=1 data.num_train=100 data.val_size=20 data.num_test=40)
else
    convnet=(model=convnet "${train_data[@]}" trainer=gpu)
fi
t0=$(date +%s.%N)
run_step "convnet run" python -m src.train "${convnet[@]}" hydra.run.dir="$work/convnet"
t1=$(date +%s.%N)
{
    printf -- '- command: `python -m src.train %s`\n' "${convnet[*]}"
    printf -- '- wall time, process start to exit: %s s (target on an H100: under 20 s)\n' \
        "$(python -c "print(f'{$t1 - $t0:.1f}')")"
    echo "- final metrics (run.yaml):"
    python - "$work/convnet/run.yaml" <<'PY'
import sys, yaml
record = yaml.safe_load(open(sys.argv[1]))
for key, value in (record.get("metrics") or {}).items():
    print(f"    - {key}: {value:.4f}")
print(f"    - status: {record.get('status')}")
PY
} >>"$out" 2>&1

# 4. No host-to-device copies inside training steps.
section "Host-to-device copies in training steps"
if $dry_run; then copy_models=(mlp); else copy_models=(mlp convnet); fi
for model in "${copy_models[@]}"; do
    if $dry_run; then size=(--warmup 1 --steps 2); else size=(--warmup 5 --steps 20); fi
    run_step "host copies $model" python scripts/check_host_copies.py --model "$model" \
        "${size[@]}" --output-dir "$work/copies_$model" -- "${train_data[@]}" \
        trainer.accelerator="$([[ $device == cuda ]] && echo gpu || echo cpu)"
    grep "host-to-device" "$work/step.log" | sed 's/^/- /' >>"$out"
done

{
    echo
    echo "## Summary"
    echo
    echo "- total wall time: $(( $(date +%s) - started )) s (target: under 8 minutes on an H100)"
    if [[ ${#failed[@]} -eq 0 ]]; then echo "- every step passed"; else
        echo "- FAILED: ${failed[*]}"; fi
} >>"$out"
cat "$out"
[[ ${#failed[@]} -eq 0 ]]
