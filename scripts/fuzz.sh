#!/usr/bin/env bash
# Builds and runs every cargo-fuzz target for a bounded time (issue #15).
# Not part of scripts/test.sh: fuzzing needs the nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`), and takes as long as you give it.
#
#   scripts/fuzz.sh [seconds-per-target] [crate/target ...]
#
#   scripts/fuzz.sh                       # every target, 60 s each
#   scripts/fuzz.sh 600 gateway/sse       # one target, 10 minutes
#   FUZZ_RUNS=10000000 scripts/fuzz.sh 3600  # stop at 10M executions or 1 h
#
# Targets live in <crate>/fuzz/fuzz_targets; committed seeds in
# <crate>/fuzz/seeds/<target>. What the fuzzers learn (the working corpus),
# crash artifacts, logs and builds go under target-fuzz/ (ignored by git;
# CONVERGIO_FUZZ_DIR moves it). Each run ends with a line
#   <crate>/<target> runs=N seconds=S exec_per_s=E crashes=C
# which is what the crate READMEs record. FUZZ_SKIP_BUILD=1 runs what is
# already built. A crash leaves its input in
# target-fuzz/artifacts/<crate>/<target>/; reproduce it with
#   cd <crate> && cargo +nightly fuzz run -s none <target> <artifact>
#
# Built without a sanitizer (`-s none`): the workspace forbids unsafe code,
# so AddressSanitizer would find little and halve the executions; debug
# assertions and overflow checks stay on (cargo-fuzz's default). Builds
# and fuzzers run at `nice -n 19` because the build machines are shared;
# FUZZ_NICE=0 gives the fuzzers a full share of a core (an hour-long run
# then gets an hour of CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

seconds=${1:-60}
shift || true
runs=${FUZZ_RUNS:--1}
niceness=${FUZZ_NICE:-19}
out=${CONVERGIO_FUZZ_DIR:-$root/target-fuzz}

# crate/target and the longest input worth trying (bytes).
all_targets=(
  "auth/card_jcs 4096"
  "auth/jwt 2048"
  "auth/peer_call 2048"
  "auth/jwks 2048"
  "gateway/sse 4096"
  "gateway/a2a_rest 1024"
  "gateway/jsonrpc 4096"
  "gateway/translate 4096"
  "orchestrator/graph_yaml 4096"
  "orchestrator/agent_reply 2048"
  "policy/cedar_policy 8192"
  "policy/policy_tests_yaml 4096"
  "cli/config 8192"
)

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz on the nightly toolchain is needed: cargo install cargo-fuzz" >&2
  exit 2
fi

selected=()
for entry in "${all_targets[@]}"; do
  name=${entry% *}
  if [ $# -eq 0 ]; then
    selected+=("$entry")
  else
    for wanted in "$@"; do
      if [ "$wanted" = "$name" ]; then
        selected+=("$entry")
      fi
    done
  fi
done
if [ ${#selected[@]} -eq 0 ]; then
  echo "no such target: $* (known: ${all_targets[*]% *})" >&2
  exit 2
fi

build_flags=(-s none --codegen-units 16 --target-dir "$out")
# What bash's `time` prints: user and system CPU seconds.
TIMEFORMAT='%3U %3S'
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
summary=()
failed=0
built=" "
for entry in "${selected[@]}"; do
  name=${entry% *}
  max_len=${entry#* }
  crate=${name%/*}
  target=${name#*/}
  if [[ "$built" != *" $crate "* && "${FUZZ_SKIP_BUILD:-0}" != 1 ]]; then
    echo "== building $crate/fuzz"
    (cd "$crate" && nice -n 19 cargo +nightly fuzz build "${build_flags[@]}")
    built+="$crate "
  fi
  corpus="$out/corpus/$crate/$target"
  artifacts="$out/artifacts/$crate/$target"
  log="$out/logs/$crate-$target.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  echo "== fuzzing $name for ${seconds}s (max_len $max_len)"
  status=0
  # The built binary is run directly (what `cargo fuzz run` does after
  # building), so fuzzing never waits on a build holding the target dir.
  # CPU seconds (user + system) are recorded beside wall seconds: at
  # `nice -n 19` on a busy machine the fuzzer gets what others leave, so
  # executions per CPU second is the figure that measures the target.
  {
    time nice -n "$niceness" "$out/$triple/release/$target" "$corpus" "$crate/fuzz/seeds/$target" \
      -max_total_time="$seconds" -runs="$runs" -max_len="$max_len" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" \
      >"$log" 2>&1 || status=$?
  } 2>"$log.cpu"
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  elapsed=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cpu=$(tail -1 "$log.cpu" | awk '{ printf "%.1f", $1 + $2 }')
  per_cpu=$(awk -v runs="${executions:-0}" -v cpu="${cpu:-0}" \
    'BEGIN { if (cpu > 0) printf "%d", runs / cpu; else print "?" }')
  crashes=$(find "$artifacts" -type f | wc -l)
  line="$name runs=${executions:-?} seconds=${elapsed:-?} exec_per_s=${rate:-?}"
  line+=" cpu_seconds=${cpu:-?} exec_per_cpu_s=$per_cpu crashes=$crashes"
  if [ "$status" -ne 0 ]; then
    line+=" exit=$status (see $log)"
    failed=1
  fi
  echo "$line"
  summary+=("$line")
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
