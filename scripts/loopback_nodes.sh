#!/usr/bin/env bash
# Two-process data-parallel run on the loopback address through burn-collective's global
# orchestrator (examples/nodes.rs), against the same training in one process with the whole
# batch. Prints each node's outcome and the largest parameter difference from the reference.
#
#   bash scripts/loopback_nodes.sh            # 20 steps, 2 nodes × 1 peer × 16 rows
#   STEPS=4 TIMEOUT=10 bash scripts/loopback_nodes.sh
#
# Ports are taken from PORT (default 3000): PORT for the orchestrator, PORT+1 and PORT+2 for
# the nodes' data services. Output goes to OUT (default: a fresh temporary folder).
set -uo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-3000}"
STEPS="${STEPS:-20}"
TIMEOUT="${TIMEOUT:-30}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"

cargo build --release --example nodes >&2 || exit 1
BIN="$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/nodes"

"$BIN" orchestrator --port "$PORT" >"$OUT/orchestrator.log" 2>&1 &
orchestrator=$!
trap 'kill $orchestrator 2>/dev/null' EXIT
sleep 1

for node in 0 1; do
    "$BIN" node --node "$node" --nodes 2 --steps "$STEPS" --timeout "$TIMEOUT" \
        --orchestrator "ws://127.0.0.1:$PORT" --address "ws://127.0.0.1:$((PORT + 1 + node))" \
        --out "$OUT/node$node.txt" >"$OUT/node$node.log" 2>&1 &
    pids[node]=$!
done
"$BIN" reference --nodes 2 --steps "$STEPS" --out "$OUT/reference.txt" >"$OUT/reference.log" 2>&1

status=0
for node in 0 1; do
    if wait "${pids[node]}"; then
        echo "node $node: trained ($(tail -1 "$OUT/node$node.log"))"
        diff=$(paste "$OUT/node$node.txt" "$OUT/reference.txt" \
            | awk '{d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d} END {printf "%.3g", m}')
        echo "node $node: largest parameter difference from the one-process run: $diff"
    else
        status=1
        echo "node $node failed: $(grep -m1 '^error' "$OUT/node$node.log")"
    fi
done
echo "logs and parameters in $OUT"
exit $status
