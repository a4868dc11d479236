#!/usr/bin/env bash
# The project's CUDA check (docs/gpu.md). Three ways to call it, from the repository root:
#
#   benchmarks/gpu_check.sh --fetch-wheels .whl [--python-version 3.12] \
#       [--platform manylinux2014_x86_64] [--all]
#       Here, with a package registry: download the wheels the GPU image lacks
#       (benchmarks/gpu_wheels.txt, --no-deps, binary only) into .whl/ (git-ignored).
#
#   benchmarks/gpu_check.sh --wheels .whl [gpu_check.py options]
#       On the GPU machine, offline: install what is missing from .whl/ only
#       (pip --no-index; torch and torchvision pinned to the installed versions, so never
#       reinstalled), install the project with --no-deps -e ., then run the check.
#
#   benchmarks/gpu_check.sh [gpu_check.py options]
#       Run the check with what is installed (e.g. --device cpu --steps 5 --samples 8).
#
# Output: the table on stdout; gpu_check.txt, gpu_check.json and gpu_check.log in $OUT
# (default ./gpu_check_out).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
LIST="$ROOT/benchmarks/gpu_wheels.txt"
die() { echo "gpu_check: $*" >&2; exit 2; }

fetch_wheels() {  # DIR PYVER PLATFORM ALL
    local dir="$1" pyver="$2" platform="$3" all="$4" reqs
    mkdir -p "$dir"
    if [[ "$all" == 1 ]]; then
        reqs=$(sed -e 's/#.*//' "$LIST" | grep -v '^[[:space:]]*$')
    else
        reqs=$(grep -v 'heavy' "$LIST" | sed -e 's/#.*//' | grep -v '^[[:space:]]*$')
    fi
    # manylinux_2_17 is manylinux2014; newer tags are listed too so that wheels built only
    # for a newer glibc (the GPU image's is 2.39) are found.
    local plats=() p
    for p in "$platform" manylinux_2_39_x86_64 manylinux_2_35_x86_64 manylinux_2_34_x86_64 \
             manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
             manylinux1_x86_64; do
        plats+=(--platform "$p")
    done
    # shellcheck disable=SC2086  # one requirement per word
    "$PY" -m pip download --no-deps --only-binary=:all: --implementation cp \
        --python-version "$pyver" "${plats[@]}" -d "$dir" $reqs
    du -sh "$dir"
    echo "gpu_check: $(ls "$dir"/*.whl | wc -l) wheels in $dir for Python $pyver"
}

check_cuda() {  # the --device asked for, from the driver's arguments (default cuda)
    local dev=cuda prev=""
    for a in "$@"; do
        [[ "$prev" == --device ]] && dev="$a"
        [[ "$a" == --device=* ]] && dev="${a#--device=}"
        prev="$a"
    done
    [[ "$dev" == cuda* ]] || return 0
    "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
        2>/dev/null || die "--device $dev: CUDA is not available here (python: $PY); \
use --device cpu for a smoke run"
}

install_from() {  # DIR: what the image lacks, from DIR only; the project itself with no deps
    local dir="$1" cons reqs
    [[ -d "$dir" ]] || die "--wheels $dir: no such folder (make it with --fetch-wheels)"
    cons="$(mktemp)"
    # pin what the image brings so pip can never replace it
    "$PY" - >"$cons" <<'EOF'
import importlib.metadata as md
for name in ("torch", "torchvision", "triton"):
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        pass
EOF
    # the project's requirements, less the torch stack, the GUI and the PostgreSQL driver
    reqs=$("$PY" - "$ROOT/pyproject.toml" <<'EOF'
import re, sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
skip = {"torch", "torchvision", "gradio", "psycopg"}   # brought by the image / not imported
for d in dict.fromkeys(d.replace(" ", "") for d in deps):   # pyproject names scipy twice
    if re.split(r"[<>=!~\[;]", d, maxsplit=1)[0].lower() not in skip:
        print(d)
EOF
)
    # shellcheck disable=SC2086
    "$PY" -m pip install -q --no-index --find-links "$dir" -c "$cons" \
        --no-cache-dir $reqs || die "installing from $dir failed (a wheel missing there?)"
    "$PY" -m pip install -q --no-index --find-links "$dir" -c "$cons" \
        --no-cache-dir "setuptools>=68" || die "setuptools>=68 is needed to install the project"
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
        -e "$ROOT" || die "pip install --no-deps -e . failed"
    rm -f "$cons"
}

main() {
    local wheels="" fetch="" pyver=3.12 platform=manylinux2014_x86_64 all=0 args=()
    while (($#)); do
        case "$1" in
            --fetch-wheels) fetch="${2:?--fetch-wheels needs a folder}"; shift 2 ;;
            --wheels) wheels="${2:?--wheels needs a folder}"; shift 2 ;;
            --python-version) pyver="${2:?}"; shift 2 ;;
            --platform) platform="${2:?}"; shift 2 ;;
            --all) all=1; shift ;;
            *) args+=("$1"); shift ;;
        esac
    done
    if [[ -n "$fetch" ]]; then
        ((${#args[@]} == 0)) || die "--fetch-wheels takes no check options (got ${args[*]})"
        fetch_wheels "$fetch" "$pyver" "$platform" "$all"
        return
    fi
    check_cuda "${args[@]+"${args[@]}"}"
    [[ -n "$wheels" ]] && install_from "$wheels"
    local out="${OUT:-$ROOT/gpu_check_out}"
    mkdir -p "$out"
    export OUT="$out" PYTHONUNBUFFERED=1
    cd "$ROOT"
    "$PY" benchmarks/gpu_check.py "${args[@]+"${args[@]}"}" 2>&1 | tee "$out/gpu_check.log"
}

main "$@"
