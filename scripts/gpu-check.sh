#!/usr/bin/env bash
# The one prepared GPU check of pdlib's native engine: one CUDA GPU, <= 8 minutes (docs/gpu.md).
#
#   scripts/gpu-check.sh OUTDIR [--dry-run|--summary] [--python PY] [--data DIR] [--wheels DIR]
#                        [--skip STEP,...] [--timeout STEP=SECONDS]... [--bench-args "ARGS"]
#   scripts/gpu-check.sh --stage [WHEEL_DIR...]   (on the machine that prepares the run, see below)
#
# Steps (each writes OUTDIR/<step>/, its output in OUTDIR/<step>/log.txt; a failing or timed-out
# step is recorded and the next one runs):
#   env     nvidia-smi, python/torch/transformers/triton versions, the attention backend "auto" picks,
#           a Triton smoke test (compile + compare with torch; if it fails the later steps run with
#           PDLIB_ATTN_BACKEND=torch, so one GPU run still measures everything else)
#   tests   pytest -m gpu over the test files holding gpu tests (junit.xml)
#   bench   benchmarks/native_vs_hf.py: Qwen3-1.7B config, random weights, bf16 (result.json, result.md)
#   grid    pdlib run --grid params/grid-gpu-check.yaml: alpaca + sharegpt, N=64, 1,024 requests,
#           native engine (OUTDIR/grid/gpu-check/..., run.json)
#   memory  pdlib profile-memory: Qwen3-1.7B, random weights, bf16, native engine (qwen3-1.7b.json,
#           per_layer.csv)
# then OUTDIR/summary.md (also printed: one row per step, status, seconds, headline figures) and
# OUTDIR/steps.tsv (--summary OUTDIR rewrites and prints the summary of an earlier run). Exit status: 0 every step passed, 1 some step failed, 2 bad arguments or setup
# (no OUTDIR, no data folder, no python with torch), 3 no CUDA device. --dry-run prints each step's
# command, one per line, and runs nothing.
#
# Nothing is installed but wheel files: the *.whl of --wheels DIR (default $PDLIB_WHEELS, else
# .gpu-check/wheels when present) go into a temporary --target folder on PYTHONPATH
# (pip --no-index --no-deps); pdlib runs from this checkout (PYTHONPATH), never installed.
# Data: --data DIR, else $PDLIB_DATA_DIR, else ../shared/data, else .gpu-check/data.
# --stage (run where the repository and ../shared live, before sending the tree to the GPU
# machine): fills the git-ignored .gpu-check/ (listed in .git/info/exclude) with the wheels of
# WHEEL_DIR... (default ../shared/device-wheels: papermill, ipykernel, ...), pytest's wheels
# (pip download, unless already there) and the data the check reads (models/qwen3-1.7b, alpaca,
# sharegpt); carry .gpu-check with the tree.
set -euo pipefail

SELF_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SELF_DIR/.." && pwd)"
STAGE_DIR="$REPO_DIR/.gpu-check"
STEPS=(env tests bench grid memory)
declare -A LIMIT=([env]=60 [tests]=90 [bench]=100 [grid]=190 [memory]=40)
PYTEST_WHEELS=(pytest pluggy iniconfig pytest-timeout)

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "gpu-check: error: $*" >&2; exit "${2:-2}"; }

# ----------------------------------------------------------------------------- --stage
if [[ "${1:-}" == "--stage" ]]; then
    shift
    SRC=("$@")
    [[ ${#SRC[@]} -gt 0 ]] || SRC=("$REPO_DIR/../shared/device-wheels")
    mkdir -p "$STAGE_DIR/wheels" "$STAGE_DIR/data/models"
    for d in "${SRC[@]}"; do
        [[ -d "$d" ]] || die "no wheel folder $d"
        cp -n "$d"/*.whl "$STAGE_DIR/wheels/" 2>/dev/null || true
    done
    for w in "${PYTEST_WHEELS[@]}"; do
        ls "$STAGE_DIR/wheels/${w//-/_}"-*.whl >/dev/null 2>&1 \
            || "${PYTHON:-python3}" -m pip download -q --no-deps --only-binary :all: -d "$STAGE_DIR/wheels" "$w"
    done
    DATA="${PDLIB_DATA_DIR:-$REPO_DIR/../shared/data}"
    for d in models/qwen3-1.7b alpaca sharegpt; do
        [[ -d "$DATA/$d" ]] || die "no $DATA/$d (set PDLIB_DATA_DIR)"
        mkdir -p "$STAGE_DIR/data/$d" && cp -r "$DATA/$d/." "$STAGE_DIR/data/$d/"
    done
    EXCL="$(git -C "$REPO_DIR" rev-parse --git-path info/exclude)"
    [[ "$EXCL" == /* ]] || EXCL="$REPO_DIR/$EXCL"
    mkdir -p "$(dirname "$EXCL")"
    grep -qxF "/.gpu-check/" "$EXCL" 2>/dev/null || echo "/.gpu-check/" >> "$EXCL"
    echo "gpu-check: staged $(ls "$STAGE_DIR/wheels" | wc -l) wheels and the data in $STAGE_DIR ($(du -sh "$STAGE_DIR" | cut -f1))"
    exit 0
fi

# ----------------------------------------------------------------------------- arguments
OUT="" DRY=0 SUMMARY=0 PY="${PYTHON:-python3}" DATA="" WHEELS="${PDLIB_WHEELS:-}" SKIP="" BENCH_ARGS=""
need() { [[ $# -ge 2 && "$2" != --* ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --dry-run) DRY=1; shift ;;
        --summary) SUMMARY=1; shift ;;
        --python) need "$@"; PY="$2"; shift 2 ;;
        --data) need "$@"; DATA="$2"; shift 2 ;;
        --wheels) need "$@"; WHEELS="$2"; shift 2 ;;
        --skip) need "$@"; SKIP="$2"; shift 2 ;;
        --bench-args) [[ $# -ge 2 ]] || die "--bench-args needs a value"; BENCH_ARGS="$2"; shift 2 ;;
        --timeout)
            need "$@"; [[ "$2" =~ ^([a-z]+)=([0-9]+)$ && -n "${LIMIT[${BASH_REMATCH[1]}]:-}" ]] \
                || die "--timeout wants STEP=SECONDS with STEP one of ${STEPS[*]}, got '$2'"
            LIMIT[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}; shift 2 ;;
        --stage) die "--stage must come first" ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) [[ -z "$OUT" ]] || die "one OUTDIR only (got '$OUT' and '$1')"; OUT="$1"; shift ;;
    esac
done
if [[ -z "$OUT" ]]; then usage >&2; die "OUTDIR is required"; fi
for s in ${SKIP//,/ }; do [[ -n "${LIMIT[$s]:-}" ]] || die "--skip: unknown step '$s' (steps: ${STEPS[*]})"; done
skipped() { [[ ",$SKIP," == *",$1,"* ]]; }

if [[ $SUMMARY == 1 ]]; then DATA="${DATA:-<data>}"
elif [[ -z "$DATA" ]]; then
    for d in "${PDLIB_DATA_DIR:-}" "$REPO_DIR/../shared/data" "$STAGE_DIR/data"; do
        [[ -n "$d" && -d "$d/models/qwen3-1.7b" ]] && { DATA="$(cd "$d" && pwd)"; break; }
    done
    [[ -n "$DATA" || $DRY == 1 ]] || die "no data folder (models/qwen3-1.7b) in \$PDLIB_DATA_DIR, ../shared/data or .gpu-check/data; pass --data DIR or run --stage first"
    DATA="${DATA:-<data>}"
elif [[ $DRY == 0 ]]; then
    [[ -f "$DATA/models/qwen3-1.7b/config.json" ]] || die "no $DATA/models/qwen3-1.7b/config.json"
    DATA="$(cd "$DATA" && pwd)"
fi
[[ -n "$WHEELS" || ! -d "$STAGE_DIR/wheels" ]] || WHEELS="$STAGE_DIR/wheels"
[[ -z "$WHEELS" || -d "$WHEELS" || $DRY == 1 || $SUMMARY == 1 ]] || die "no wheel folder $WHEELS"
MODEL="$DATA/models/qwen3-1.7b"
GPU_TESTS=()
for f in "$REPO_DIR"/tests/test_*.py; do grep -q "mark.gpu" "$f" && GPU_TESTS+=("tests/${f##*/}"); done

# ----------------------------------------------------------------------------- the steps
read -r -d '' ENV_PY <<'PY' || true
import json, subprocess, sys
from pathlib import Path
import torch, transformers
out = Path(sys.argv[1])
info = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
        "transformers": transformers.__version__}
for mod in ("triton", "flash_attn"):
    try:
        info[mod] = __import__(mod).__version__
    except ImportError:
        info[mod] = None
p = torch.cuda.get_device_properties(0)
info.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 1e9, 1), sms=p.multi_processor_count,
            capability=".".join(map(str, torch.cuda.get_device_capability(0))), gpus=torch.cuda.device_count())
from pdlib.engines.native.model_runner import resolve_backend, triton_unavailable
info["auto_backend"] = resolve_backend("auto", "cuda", torch.bfloat16)
info["triton_unavailable"] = triton_unavailable("cuda", torch.bfloat16)
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                         "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
except (OSError, subprocess.SubprocessError) as e:
    info["nvidia_smi"] = f"not run: {e}"
if info["auto_backend"] == "triton":      # compile and check the kernels once before the long steps
    try:
        from pdlib.engines.native import attention as A, triton_attention as T
        g = torch.Generator(device="cuda").manual_seed(0)
        for dt, tol in ((torch.bfloat16, 2e-2), (torch.float32, 2e-5)):
            k = torch.randn(9, 16, 2, 128, device="cuda", generator=g).to(dt)
            v = torch.randn(9, 16, 2, 128, device="cuda", generator=g).to(dt)
            q = torch.randn(3, 8, 128, device="cuda", generator=g).to(dt)
            bt = torch.tensor([[4, 0, 7, 2], [1, 8, 8, 8], [3, 5, 6, 8]], device="cuda", dtype=torch.int32)
            cl = torch.tensor([60, 1, 33], device="cuda", dtype=torch.int32)
            ref = A.decode_torch(q.float()[:, :, None], k.float(), v.float(), bt, cl, 0.088)[:, 0]
            for splits in (1, 4):
                err = (T.decode_attention(q, k, v, bt, cl, 0.088, splits=splits).float() - ref).abs().max().item()
                assert err <= tol, f"decode {dt} splits={splits}: max error {err:.3g} > {tol}"
            k2, v2, k3, v3 = k.clone(), v.clone(), k.clone(), v.clone()
            slots = torch.tensor([3, 77, 140], device="cuda")
            A.store_kv(k2, v2, q[:, :2], q[:, 2:4], slots)
            T.store_kv(k3, v3, q[:, :2], q[:, 2:4], slots)
            assert torch.equal(k2, k3) and torch.equal(v2, v3), f"store_kv {dt} differs"
        torch.cuda.synchronize()
        info["triton_smoke"] = "ok"
    except Exception as e:  # noqa: BLE001 - reported; the later steps fall back to torch
        info["triton_smoke"] = f"{type(e).__name__}: {e}"[:500]
(out / "env.json").write_text(json.dumps(info, indent=2))
print(json.dumps(info, indent=2))
sys.exit(0 if info.get("triton_smoke") in (None, "ok") else 1)
PY

read -r -d '' SUMMARY_PY <<'PY' || true
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path
out = Path(sys.argv[1])
def load(p):
    try:
        return json.loads((out / p).read_text())
    except (OSError, ValueError):
        return None
def f(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"
rows = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()[1:]]
notes = {}
e = load("env/env.json")
if e:
    notes["env"] = (f"{e['gpu']} ({e['gpu_memory_gb']} GB, sm {e['capability']}), torch {e['torch']}, transformers "
                    f"{e['transformers']}, triton {e['triton']}, flash-attn {e['flash_attn']}; auto attention: "
                    f"{e['auto_backend']}")
    if e.get("triton_smoke") not in (None, "ok"):
        notes["env"] += f"; Triton smoke test FAILED ({e['triton_smoke']}), later steps ran with torch attention"
try:
    t = ET.parse(out / "tests/junit.xml").getroot()
    t = t if t.tag == "testsuite" else t.find("testsuite")
    n, fl, er, sk = (int(t.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    notes["tests"] = f"{n - fl - er - sk} passed, {fl} failed, {er} errors, {sk} skipped"
except (OSError, ET.ParseError, AttributeError):
    pass
b = load("bench/result.json")
if b:
    d = {r["batch"]: r for r in b.get("decode", [])}
    r = d.get(64) or (list(d.values())[-1] if d else None)
    sv = b.get("serving", {})
    if r:
        notes["bench"] = (f"batch {r['batch']} ctx {r['context']}: native {f(r['native_ms'])} ms/step "
                          f"(device {f(r['native_device_ms'])}), floor {f(r['floor_ms'])} ms "
                          f"({f(r['native_ms'] / r['floor_ms'])}x), HF eager {f(r.get('hf_eager_ms'))} ms; serving "
                          f"{f(sv.get('native_tok_s'), 0)} tok/s vs generate_batch {f(sv.get('hf_generate_batch_tok_s'), 0)}")
g = load("grid/run.json")
cells = sorted((out / "grid").glob("*/*/*/*/cell.json"))
if g or cells:
    st = [nb.get("status") for c in cells for nb in ((load(c.relative_to(out)) or {}).get("notebooks") or {}).values()]
    notes["grid"] = (f"{st.count('ok')} of {len(st)} notebooks ok in {len(cells)} cells"
                     + (f"; {g['failed']} failed: {'; '.join(g['failures'])[:300]}" if g and g.get("failed") else ""))
m = load("memory/qwen3-1.7b.json")
if m:
    mb = m.get("memory_breakdown", {})
    notes["memory"] = ", ".join(f"{k.removesuffix('_gb')} {f(mb.get(k), 3)} GB" for k in
                                ("model_weights_gb", "kv_cache_gb", "activations_gb", "framework_overhead_gb", "total_gb"))
print(f"# pdlib GPU check: {out}\n")
print("| step | status | seconds | result |\n|---|---|---|---|")
for step, status, secs in rows:
    print(f"| {step} | {status} | {secs} | {notes.get(step, '-')} |")
if b and b.get("decode"):
    print("\n| batch | ctx | floor ms | native ms | native device ms | native/floor | HF eager ms |\n|---|---|---|---|---|---|---|")
    for r in b["decode"]:
        print(f"| {r['batch']} | {r['context']} | {f(r['floor_ms'], 3)} | {f(r['native_ms'], 3)} | "
              f"{f(r['native_device_ms'], 3)} | {f(r['native_ms'] / r['floor_ms'])} | {f(r.get('hf_eager_ms'), 3)} |")
PY

step_cmd() {   # the command of a step, one word per line
    case "$1" in
        env) printf '%s\n' "$PY" -c "$ENV_PY" "$OUT/env" ;;
        tests) printf '%s\n' "$PY" -m pytest -m gpu -q -p no:cacheprovider -o addopts=-ra ${PYTEST_TIMEOUT[@]+"${PYTEST_TIMEOUT[@]}"} \
                   --junitxml "$OUT/tests/junit.xml" "${GPU_TESTS[@]}" ;;
        bench) printf '%s\n' "$PY" benchmarks/native_vs_hf.py --device cuda --config qwen3-1.7b --model-dir "$MODEL" \
                   --dtype bf16 --batches 1 16 64 256 --decode-steps 16 --requests 256 --skip static \
                   ${BENCH_ARGS:+$BENCH_ARGS} --json-out "$OUT/bench/result.json" ;;
        grid) printf '%s\n' "$PY" -m pdlib run --grid params/grid-gpu-check.yaml --outputs "$OUT/grid" --no-progress --json ;;
        memory) printf '%s\n' "$PY" -m pdlib profile-memory --model "$MODEL" --weights random --engine native \
                    --dtype bfloat16 --device cuda --batch-size 8 --prompt-length 512 --max-tokens 128 --repeats 3 \
                    --per-layer "$OUT/memory/per_layer.csv" --output "$OUT/memory/qwen3-1.7b.json" ;;
    esac
}
PYTEST_TIMEOUT=(--timeout 300)
show() { local out="" a; for a in "$@"; do out+="$(printf '%q' "$a") "; done; echo "${out% }"; }

if [[ $SUMMARY == 1 ]]; then
    [[ -f "$OUT/steps.tsv" ]] || die "no $OUT/steps.tsv (not a gpu-check OUTDIR)"
    "$PY" -c "$SUMMARY_PY" "$OUT" | tee "$OUT/summary.md"
    exit 0
fi
if [[ $DRY == 1 ]]; then
    [[ -n "$WHEELS" ]] && echo "wheels: $(show "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "<site>" "$WHEELS/*.whl")"
    for s in "${STEPS[@]}"; do
        skipped "$s" && { echo "# $s: skipped"; continue; }
        if [[ $s == env ]]; then c=("$PY" -c "<ENV_PY: versions, GPU, auto backend -> env.json>" "$OUT/env")
        else mapfile -t c < <(step_cmd "$s"); fi
        if [[ $s == grid ]]; then redir="> $OUT/grid/run.json 2> $OUT/grid/log.txt"; else redir="> $OUT/$s/log.txt 2>&1"; fi
        echo "$s: timeout ${LIMIT[$s]} $(show "${c[@]}") $redir"
    done
    echo "summary: $OUT/summary.md $OUT/steps.tsv"
    exit 0
fi

"$PY" -c "import torch" 2>/dev/null || die "'$PY' cannot import torch (--python PY)"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || die "no CUDA device visible to torch ($("$PY" -c 'import torch; print(torch.__version__)'))" 3
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$REPO_DIR"
SITE="$(mktemp -d)"
trap 'rm -rf "$SITE"' EXIT
if [[ -n "$WHEELS" ]] && compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl \
        || die "installing the wheels of $WHEELS failed"
fi
export PYTHONPATH="$REPO_DIR:$SITE${PYTHONPATH:+:$PYTHONPATH}" PATH="$SITE/bin:$PATH" PDLIB_DATA_DIR="$DATA"
export PDLIB_CACHE_DIR="${PDLIB_CACHE_DIR:-$SITE/cache}" MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false
if "$PY" -c "import ipykernel" 2>/dev/null; then
    "$PY" -m ipykernel install --prefix "$SITE/kern" >/dev/null 2>&1 || true
    export JUPYTER_PATH="$SITE/kern/share/jupyter:$SITE/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
fi
"$PY" -c "import pytest_timeout" 2>/dev/null || PYTEST_TIMEOUT=()

printf 'step\tstatus\tseconds\n' > "$OUT/steps.tsv"
FAILED=0
for s in "${STEPS[@]}"; do
    if skipped "$s"; then printf '%s\tskipped\t0\n' "$s" >> "$OUT/steps.tsv"; continue; fi
    mkdir -p "$OUT/$s"
    if [[ $s == env ]]; then c=("$PY" -c "$ENV_PY" "$OUT/env"); else mapfile -t c < <(step_cmd "$s"); fi
    echo "gpu-check: $s ($(date -u +%H:%M:%S), limit ${LIMIT[$s]} s)" >&2
    t0=$SECONDS rc=0
    if [[ $s == grid ]]; then
        timeout -k 10 "${LIMIT[$s]}" "${c[@]}" > "$OUT/grid/run.json" 2> "$OUT/grid/log.txt" || rc=$?
    else
        timeout -k 10 "${LIMIT[$s]}" "${c[@]}" > "$OUT/$s/log.txt" 2>&1 || rc=$?
    fi
    case $rc in 0) st=ok ;; 124|137) st=timeout ;; *) st="failed($rc)" ;; esac
    [[ $rc == 0 ]] || FAILED=1
    if [[ $s == env ]]; then
        smoke="$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1])).get("triton_smoke") or "")' \
                 "$OUT/env/env.json" 2>/dev/null)" || smoke=""
        if [[ -n "$smoke" && "$smoke" != ok ]]; then
            export PDLIB_ATTN_BACKEND=torch
            echo "gpu-check: the Triton smoke test failed ($smoke); later steps run with attn_backend torch" >&2
        fi
    fi
    printf '%s\t%s\t%s\n' "$s" "$st" "$((SECONDS - t0))" >> "$OUT/steps.tsv"
    echo "gpu-check: $s: $st in $((SECONDS - t0)) s" >&2
done
"$PY" -c "$SUMMARY_PY" "$OUT" | tee "$OUT/summary.md"
exit $FAILED
