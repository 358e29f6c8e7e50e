#!/usr/bin/env bash
# Before/after timing of two (or more) builds of `examples/model_speed`, run alternately so that a
# change in the machine's speed (a VM's neighbours) falls on all of them alike; prints each
# binary's step times, their median and their minimum.
#
#   cargo build --release --example model_speed && cp target/release/examples/model_speed model_speed.after
#   git stash && cargo build --release --example model_speed && cp target/release/examples/model_speed model_speed.before && git stash pop
#   bash bench/ab_model_speed.sh gpt-384 6 6 ./model_speed.before ./model_speed.after
#
# Arguments: case (as `model_speed --only`), timed steps per run, rounds, then the binaries.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 CASE STEPS ROUNDS BINARY..." >&2
    exit 2
fi
case_name=$1 steps=$2 rounds=$3
shift 3
for _ in $(seq "$rounds"); do
    for bin in "$@"; do
        ms=$("$bin" --only "$case_name" --steps "$steps" --warmup 2 | tail -1 | awk -F'|' '{print $3}')
        echo "$bin $ms"
    done
done | awk '{ times[$1] = times[$1] " " $2 }
END {
    for (bin in times) {
        n = split(times[bin], t, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (t[j] < t[i]) { x = t[i]; t[i] = t[j]; t[j] = x }
        median = (n % 2) ? t[(n + 1) / 2] : (t[n / 2] + t[n / 2 + 1]) / 2
        printf "%s: ms/step%s; median %.1f, min %.1f\n", bin, times[bin], median, t[1]
    }
}'
