#!/usr/bin/env bash
# Where the gateway's CPU goes (issue 25), per proxied request and by stage,
# in instructions: numbers that do not move with the machine's load.
#
# Runs the gateway bench's child (`gateway/benches/gateway.rs`: the gateway
# over a SQLite registry, the shipped policies plus the bench's permit,
# audit to SQLite, an API key caller) under `valgrind --tool=callgrind`
# twice, for SMALL and LARGE SendMessage calls (1 KB text part, 8 keep-alive
# connections), and divides the difference of each function's inclusive
# count by LARGE - SMALL: start-up, warm-up and exit cancel out. Stages are
# owned by the functions listed in STAGES below (inclusive: a stage counts
# everything its functions call). Kernel time (syscalls, TCP) is not
# counted: callgrind sees user space only.
#
# Usage: scripts/profile-gateway.sh            (SMALL=200, LARGE=1200)
#        SMALL=100 LARGE=600 scripts/profile-gateway.sh
#        BENCH_EXE=target/release/deps/gateway-… scripts/profile-gateway.sh
#        REUSE=1 scripts/profile-gateway.sh     (analyse the last runs again)
#        CONVERGIO_BENCH_PROFILE_POLICY=off PROFILE_DIR=target/profile-off \
#          scripts/profile-gateway.sh           (the yardstick's baseline: no
#                                                authentication, policy off)
# Needs valgrind (Debian: apt-get install valgrind) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

SMALL="${SMALL:-200}"
LARGE="${LARGE:-1200}"
OUT="${PROFILE_DIR:-target/profile-gateway}"

for tool in valgrind callgrind_annotate python3; do
  command -v "$tool" >/dev/null || { echo "profile-gateway: $tool is not installed" >&2; exit 1; }
done
mkdir -p "$OUT"

if [ -n "${BENCH_EXE:-}" ]; then
  # An already built bench binary (e.g. to profile an older build).
  exe="$BENCH_EXE"
else
  echo "== building the gateway bench (release)" >&2
  exe=$(nice cargo bench -p convergio-gateway --bench gateway --no-run 2>&1 \
    | tee "$OUT/build.log" \
    | sed -n 's/.*Executable benches\/gateway.rs (\(.*\)).*/\1/p' | tail -1)
fi
if [ -z "$exe" ] || [ ! -x "$exe" ]; then
  echo "profile-gateway: no bench executable (see $OUT/build.log)" >&2
  exit 1
fi

for count in "$SMALL" "$LARGE"; do
  if [ -n "${REUSE:-}" ] && [ -s "$OUT/inclusive.$count.txt" ]; then
    continue  # REUSE=1: analyse the runs already in $OUT again
  fi
  echo "== $count calls under callgrind" >&2
  rm -f "$OUT/callgrind.$count"
  CONVERGIO_BENCH_ONLY=profile \
  CONVERGIO_BENCH_PROFILE_REQUESTS="$count" \
  CONVERGIO_BENCH_CALLGRIND_OUT="$OUT/callgrind.$count" \
    "$exe" | tee "$OUT/run.$count.log" >&2
  grep -q "failed 0 exited true" "$OUT/run.$count.log" || {
    echo "profile-gateway: the $count-call run failed or did not exit cleanly" >&2
    exit 1
  }
  callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$OUT/callgrind.$count" \
    > "$OUT/inclusive.$count.txt"
  callgrind_annotate --auto=no --threshold=100 "$OUT/callgrind.$count" > "$OUT/self.$count.txt"
done

MODE="API key, shipped policies + audit"
[ "${CONVERGIO_BENCH_PROFILE_POLICY:-}" = off ] && MODE="no authentication, policy off"
python3 - "$OUT" "$SMALL" "$LARGE" "$MODE" <<'PYTHON'
import re
import sys

out, small, large, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
calls = large - small

# Each stage: the functions that own it (regular expressions over the
# demangled `file:function` text callgrind_annotate prints). Inclusive
# counts: a function's callees are in its figure, so a stage's functions
# must not call one another (or a stage would count twice).
STAGES = [
    ("accept + HTTP/1 parse and encode (hyper server)",
     [r"<hyper::proto::h1::role::Server as hyper::proto::h1::Http1Transaction>::(parse|encode)$"]),
    ("authenticate (API key: cache, SHA-256)",
     [r"convergio_gateway::layers::authenticate::Authenticator::api_key::\{\{closure"]),
    ("decode the JSON-RPC request",
     [r"^convergio_gateway::a2a::inbound::parse_jsonrpc$"]),
    ("route (registry lookup)",
     [r"RegistryRoutes as convergio_gateway::routes::RouteTable>::resolve::\{\{closure"]),
    ("authorise: Cedar decision",
     [r"^convergio_policy::engine::PolicyEngine::authorize$"]),
    ("authorise: audit entry built and queued",
     [r"^convergio_policy::audit::AuditEntry::decision$",
      r"^convergio_gateway::authorize::context_detail$",
      r"^convergio_gateway::authorize::PolicyGate::record::\{\{closure"]),
    ("task ownership (task and context routes)",
     [r"^convergio_gateway::a2a::forward::RelayContext::remember::\{\{closure"]),
    ("forward: encode the upstream request",
     [r"^convergio_gateway::a2a::forward::encode_upstream$"]),
    ("upstream response: read, decode, re-encode",
     [r"^convergio_gateway::a2a::forward::read_capped::\{\{closure",
      r"^convergio_gateway::a2a::forward::decode_unary$",
      r"^convergio_gateway::a2a::forward::unary_response$"]),
    ("audit writer: hash chain and SQLite commit",
     [r"^convergio_policy::audit_sink::write_all::\{\{closure"]),
    ("metrics", [r"^metrics::"]),
]

line_pattern = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.*?)\s*(?:\[[^\]]*\])?\s*$")

def read(path):
    costs, total = {}, 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            match = line_pattern.match(line)
            if not match:
                continue
            cost = int(match.group(1).replace(",", ""))
            name = match.group(2)
            if name.endswith("PROGRAM TOTALS"):
                total = cost
                continue
            costs[name] = costs.get(name, 0) + cost
    return costs, total

def by_function(costs, inclusive):
    # callgrind_annotate lists a function once per source file its code
    # (inlined code included) comes from: a function's own cost is the sum
    # over those lines, its inclusive cost the largest of them.
    merged = {}
    for name, cost in costs.items():
        function = function_name(name)
        if inclusive:
            merged[function] = max(merged.get(function, 0), cost)
        else:
            merged[function] = merged.get(function, 0) + cost
    return merged

def per_call(kind):
    small_costs, small_total = read(f"{out}/{kind}.{small}.txt")
    large_costs, large_total = read(f"{out}/{kind}.{large}.txt")
    small_costs = by_function(small_costs, kind == "inclusive")
    large_costs = by_function(large_costs, kind == "inclusive")
    names = set(small_costs) | set(large_costs)
    diff = {name: (large_costs.get(name, 0) - small_costs.get(name, 0)) / calls for name in names}
    return diff, (large_total - small_total) / calls

def function_name(name):
    # `file:function`: the file part ends at the first ':' not part of '::'.
    match = re.match(r"^(.*?[^:]):(?!:)(.*)$", name)
    return match.group(2) if match else name

inclusive, total = per_call("inclusive")
selfcost, _ = per_call("self")

print(f"Instructions per proxied SendMessage ({mode}), "
      f"{calls} calls ({large} - {small}); total {total:,.0f}")
print(f"{'stage':<48} {'instr/req':>12} {'share':>7}")
counted = 0.0
for stage, patterns in STAGES:
    owners = [name for name in inclusive
              if any(re.search(pattern, name) for pattern in patterns)]
    cost = sum(inclusive[name] for name in owners)
    counted += cost
    shown = f"{cost:12,.0f}" if owners else f"{'-':>12}"
    print(f"{stage:<48} {shown} {100 * cost / max(total, 1):6.1f}%")
rest = total - counted
print(f"{'everything else (runtime, layers, hyper I/O)':<48} {rest:12,.0f} {100 * rest / max(total, 1):6.1f}%")
print()
print("Top 20 functions by own instructions per request:")
for name, cost in sorted(selfcost.items(), key=lambda item: -item[1])[:20]:
    print(f"{cost:12,.0f}  {name[:110]}")
PYTHON
