#!/usr/bin/env bash
# Run pdlib's memory breakdown profiler inside a running container and copy the JSON out.
#
#   scripts/profile-docker-model.sh CONTAINER [--model PATH|ID] [--output FILE.json]
#       [--per-layer FILE.csv] [--python PY] [--docker BIN] [--keep] [--dry-run]
#       [any other `pdlib profile-memory` flag, e.g. --max-tokens 512 --batch-size 8 --dtype bfloat16]
#   scripts/profile-docker-model.sh --detect-model < TEXT   (print the model found in TEXT)
#
# Steps: stage the profiler's modules (pdlib/{__init__,records,paths}.py, the packages pdlib/theory,
# pdlib/models and pdlib/memprof, pdlib/cli/{__init__,output,memory_profile}.py) in a local temp
# folder; `docker cp` them to /tmp/pdlib-profiler in the container; `docker exec` python -m
# pdlib.cli.memory_profile profile-memory ... (the container needs torch + transformers + numpy);
# `docker cp` the JSON (and per-layer CSV) out; remove the folder in the container (unless --keep).
#
# Model auto-detection (when --model is not given): the container's process command lines
# (/proc/*/cmdline) are searched for --model X / --model=X / --model-id X / --model-path X /
# --model_name_or_path X, then `vllm serve X`; then its environment for MODEL_NAME, MODEL_ID,
# MODEL_PATH, MODEL, HF_MODEL_ID (in that order). --detect-model applies the same rules to
# text on stdin (command lines and KEY=VALUE lines), which is how it is tested.
#
# --weights defaults to pretrained here (a serving container has the real weights). The
# profiler loads a second copy of the model next to the server's: leave room for it.
# --dry-run prints every command, one per line, and runs none (without --model it prints
# the detection command and uses the placeholder <detected-model>).
set -euo pipefail

SELF_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SELF_DIR/.." && pwd)"
REMOTE_DIR=/tmp/pdlib-profiler
DETECT_SH='for f in /proc/[0-9]*/cmdline; do tr "\000" " " < "$f" 2>/dev/null; echo; done; env'
# the staged modules: a file, or a package folder (its *.py and *.yaml files); X.py or X/ for a
# module that may be either (pdlib/theory)
SOURCES=(pdlib/__init__.py pdlib/records.py pdlib/paths.py pdlib/theory pdlib/models pdlib/memprof
         pdlib/cli/__init__.py pdlib/cli/output.py pdlib/cli/memory_profile.py)

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "profile-docker-model: error: $*" >&2; exit 2; }

detect_model() {   # stdin: command lines and KEY=VALUE lines; stdout: the model, or nothing
    awk '
    function take(v) { if (found == "" && v != "") found = v }
    /=/ && $0 !~ / / { split($0, kv, "="); env[kv[1]] = substr($0, length(kv[1]) + 2); next }
    {
        for (i = 1; i <= NF; i++) {
            if ($i ~ /^--(model|model-id|model-path|model_name_or_path)=/) { sub(/^[^=]*=/, "", $i); take($i) }
            else if ($i ~ /^--(model|model-id|model-path|model_name_or_path)$/ && i < NF) take($(i + 1))
            else if ($i == "serve" && i < NF && $(i - 1) ~ /(^|\/)vllm$/ && $(i + 1) !~ /^-/) serve = serve == "" ? $(i + 1) : serve
        }
    }
    END {
        if (found == "") found = serve
        n = split("MODEL_NAME MODEL_ID MODEL_PATH MODEL HF_MODEL_ID", names, " ")
        for (j = 1; j <= n && found == ""; j++) if (names[j] in env && env[names[j]] != "") found = env[names[j]]
        if (found != "") print found
    }'
}

if [[ "${1:-}" == "--detect-model" ]]; then detect_model; exit 0; fi
if [[ $# -lt 1 || "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; [[ $# -lt 1 ]] && exit 2 || exit 0; fi
CONTAINER="$1"; shift
[[ "$CONTAINER" == -* ]] && die "the first argument must be the container name or id, got '$CONTAINER'"

MODEL="" OUTPUT="memory_profile.json" PER_LAYER="" PY=python3 DOCKER="${DOCKER:-docker}" KEEP=0 DRY=0 WEIGHTS=pretrained
PASS=()
need() { [[ $# -ge 2 && "$2" != --* ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --model) need "$@"; MODEL="$2"; shift 2 ;;
        --output) need "$@"; OUTPUT="$2"; shift 2 ;;
        --per-layer) need "$@"; PER_LAYER="$2"; shift 2 ;;
        --python) need "$@"; PY="$2"; shift 2 ;;
        --docker) need "$@"; DOCKER="$2"; shift 2 ;;
        --weights) need "$@"; WEIGHTS="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --dry-run) DRY=1; shift ;;
        --json) die "--json is not supported here (the JSON is copied to --output)" ;;
        --max-tokens|--batch-size|--dtype|--engine|--cache|--device|--repeats|--prompt|--prompt-length)
            [[ $# -ge 2 ]] || die "$1 needs a value"; PASS+=("$1" "$2"); shift 2 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
[[ "$WEIGHTS" == random || "$WEIGHTS" == pretrained ]] || die "--weights must be random or pretrained, got '$WEIGHTS'"

show() { local out="" a; for a in "$@"; do out+="$(printf '%q' "$a") "; done; echo "${out% }"; }
run() { if [[ $DRY == 1 ]]; then show "$@"; else "$@"; fi; }

if [[ -z "$MODEL" ]]; then
    if [[ $DRY == 1 ]]; then
        show "$DOCKER" exec "$CONTAINER" sh -c "$DETECT_SH"
        MODEL="<detected-model>"
    else
        MODEL="$("$DOCKER" exec "$CONTAINER" sh -c "$DETECT_SH" | detect_model)" \
            || die "could not read the processes of container '$CONTAINER'"
        [[ -n "$MODEL" ]] || die "no model found in container '$CONTAINER' (no --model in its command lines, no MODEL_NAME/MODEL_ID/MODEL_PATH/MODEL/HF_MODEL_ID); pass --model"
        echo "profile-docker-model: detected model: $MODEL" >&2
    fi
fi

if [[ $DRY == 1 ]]; then STAGE='<stage>'; else STAGE="$(mktemp -d)"; trap 'rm -rf "$STAGE"' EXIT; fi
FILES=() DIRS=(pdlib/cli)
for s in "${SOURCES[@]}"; do
    if [[ -f "$REPO_DIR/$s" ]]; then FILES+=("$s")
    elif [[ -f "$REPO_DIR/$s.py" ]]; then FILES+=("$s.py")
    elif [[ -d "$REPO_DIR/$s" ]]; then
        DIRS+=("$s")
        for f in "$REPO_DIR/$s"/*.py "$REPO_DIR/$s"/*.yaml; do [[ -f "$f" ]] && FILES+=("$s/${f##*/}"); done
    else die "missing $REPO_DIR/$s"; fi
done
run mkdir -p "${DIRS[@]/#/$STAGE/}"
for f in "${FILES[@]}"; do run cp "$REPO_DIR/$f" "$STAGE/$f"; done
run "$DOCKER" exec "$CONTAINER" mkdir -p "$REMOTE_DIR"
run "$DOCKER" cp "$STAGE/pdlib" "$CONTAINER:$REMOTE_DIR/"
CMD=("$DOCKER" exec -w "$REMOTE_DIR" "$CONTAINER" "$PY" -m pdlib.cli.memory_profile profile-memory
     --model "$MODEL" --weights "$WEIGHTS" ${PASS[@]+"${PASS[@]}"} --output "$REMOTE_DIR/memory_profile.json")
[[ -n "$PER_LAYER" ]] && CMD+=(--per-layer "$REMOTE_DIR/per_layer.csv")
run "${CMD[@]}"
run "$DOCKER" cp "$CONTAINER:$REMOTE_DIR/memory_profile.json" "$OUTPUT"
[[ -n "$PER_LAYER" ]] && run "$DOCKER" cp "$CONTAINER:$REMOTE_DIR/per_layer.csv" "$PER_LAYER"
[[ $KEEP == 1 ]] || run "$DOCKER" exec "$CONTAINER" rm -rf "$REMOTE_DIR"
[[ $DRY == 1 ]] || echo "profile-docker-model: wrote $OUTPUT" >&2
