#!/usr/bin/env bash
# Run every atheris fuzz target (tests/fuzz/harnesses.py) for SECONDS each (default 60).
#   scripts/fuzz.sh [SECONDS] [--asan] [--jobs N]
#     --asan    build the compiled core once with AddressSanitizer + UndefinedBehaviorSanitizer
#               (CMake IMMICH_SANITIZE=address,undefined) into build/asan and fuzz against it,
#               with the sanitizer runtime preloaded; a sanitizer report fails the run.
#     --jobs N  run N targets at a time (default 1)
# Prints executions per target and in total; exits non-zero on any crash or finding (the input
# that triggered it is kept as build/fuzz/<target>/crash-*).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60 asan=0 jobs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --asan) asan=1 ;;
    --jobs) jobs="$2"; shift ;;
    [0-9]*) seconds="$1" ;;
    *) echo "usage: scripts/fuzz.sh [SECONDS] [--asan] [--jobs N]" >&2; exit 2 ;;
  esac
  shift
done

python=.venv/bin/python
targets=$($python -c 'import sys; sys.path.insert(0, "tests/fuzz"); from harnesses import TARGETS; print(*TARGETS)' 2>/dev/null | tail -1)
env_prefix=(env)
site_args=()
if [ "$asan" -eq 1 ]; then
  site=build/asan/site
  if [ ! -d "$site/immich_ml" ] || [ -n "$(find csrc pyx -newer "$site/.built" 2>/dev/null | head -1)" ]; then
    echo "fuzz: building the core with ASan/UBSan (build/asan) ..."
    rm -rf build/asan/wheel "$site"
    $python -m pip wheel -q --no-build-isolation --no-deps . -w build/asan/wheel \
      -Ccmake.define.IMMICH_SANITIZE=address,undefined -Cbuild-dir=build/asan/cmake \
      -Ccmake.build-type=RelWithDebInfo
    mkdir -p "$site"
    $python -m zipfile -e build/asan/wheel/immich_ml-*.whl "$site"
    touch "$site/.built"
  fi
  # run.py --site imports the sanitized package instead of the editable install.
  site_args=(--site "$PWD/$site")
  env_prefix=(env "LD_PRELOAD=$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
    "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1"
    "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")
fi

mkdir -p build/fuzz
run_target() {
  local target="$1" dir="build/fuzz/$1"
  mkdir -p "$dir"
  "${env_prefix[@]}" nice -n 10 $python tests/fuzz/run.py "${site_args[@]}" "$target" -max_total_time="$seconds" \
    -rss_limit_mb=4096 -timeout=30 -artifact_prefix="$dir/" -print_final_stats=1 >"$dir/log" 2>&1
}
export -f run_target
failed=0
pids=()
for target in $targets; do
  run_target "$target" & pids+=($!)
  if [ "${#pids[@]}" -ge "$jobs" ]; then
    wait "${pids[0]}" || true
    pids=("${pids[@]:1}")
  fi
done
wait || true

total=0
for target in $targets; do
  log=build/fuzz/$target/log
  runs=$(grep -Eo 'stat::number_of_executed_units: [0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)
  findings=$(find "build/fuzz/$target" -maxdepth 1 \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  grep -m1 '^fuzz: compiled core' "$log" || true
  sanitizer=$(grep -cE 'ERROR: AddressSanitizer|runtime error:|ERROR: libFuzzer' "$log" || true)
  printf 'fuzz: %-10s %10s executions, %s findings, %s sanitizer/libFuzzer errors\n' "$target" "${runs:-0}" "$findings" "$sanitizer"
  total=$((total + ${runs:-0}))
  if [ "$findings" -ne 0 ] || [ "$sanitizer" -ne 0 ] || [ -z "$runs" ]; then
    failed=1
    echo "fuzz: $target FAILED; see $log" >&2
    tail -30 "$log" >&2
  fi
done
echo "fuzz: total $total executions over $(echo $targets | wc -w) targets (${seconds}s each, asan=$asan)"
exit $failed
