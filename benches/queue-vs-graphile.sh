#!/usr/bin/env bash
# Side by side on ONE PostgreSQL: graphile-worker (batched, ../shared/bench/peers/run.sh gw),
# `memwarden bench queue`, and the pgbench floor of a claim-100-and-delete (run.sh limit),
# alternated ROUNDS times so all see the same machine weather. Prints every run, then the
# medians and the ratios the performance goal is stated in (spec/performance.md): at least
# 2x graphile-worker and 60% of the floor, p50 at most 0.6x and p99 at most 0.5x graphile's.
# With APALIS=1 (what benches/queue-vs-apalis.sh sets) each round also runs apalis-postgres
# (benches/apalis, a cargo project of its own) with the same N, C and S, and the medians add
# it and memwarden's ratios to it.
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres benches/queue-vs-graphile.sh [ROUNDS]
#
# The peers' scripts are not part of this repository: they live in the workspace memwarden is
# developed in, as shared/bench/peers beside the repository's folder (PEERS overrides where).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${1:-5}"
: "${DATABASE_URL:?set DATABASE_URL to a PostgreSQL you may create databases on}"
export N="${N:-20000}" C="${C:-24}" S="${S:-300}"
apalis="${APALIS:-0}"
peers="${PEERS:-$here/../shared/bench/peers/run.sh}"
if [ ! -x "$peers" ]; then
  cat >&2 <<MSG
the peer benchmarks are not here: $peers is missing.
They come with the workspace memwarden is developed in (shared/bench/peers beside this
repository), not with a clone of the repository; set PEERS to their run.sh if you have them.
memwarden's own figures need no peers:
  cargo build --release && target/release/memwarden bench queue --jobs $N --concurrency $C
MSG
  exit 2
fi
bin="$here/target/release/memwarden"
(cd "$here" && cargo build --release --quiet)
run_apalis() { :; }
if [ "$apalis" = 1 ]; then
  (cd "$here/benches/apalis" && cargo build --release --quiet)
  run_apalis() {                      # on a fresh database of its own, like each peer
    local db=bench_apalis
    psql "$DATABASE_URL" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
    psql "$DATABASE_URL" -qAtc "CREATE DATABASE $db" >/dev/null
    DATABASE_URL="${DATABASE_URL%/*}/$db" "$here/benches/apalis/target/release/apalis-bench" 2>/dev/null
  }
fi
out=$(mktemp)
for r in $(seq 1 "$rounds"); do
  bash "$peers" limit | grep 'claim 100' | sed "s/^/fl  /" | tee -a "$out"
  bash "$peers" gw | sed "s/^/gw  /" | tee -a "$out"
  run_apalis | sed "s/^/ap  /" | tee -a "$out"
  "$bin" bench queue --jobs "$N" --concurrency "$C" --samples "$S" 2>/dev/null | sed "s/^/mw  /" | tee -a "$out"
done
awk -v apalis="$apalis" '
  function median(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  /jobs\/s/   { for (i = 1; i <= NF; i++) if ($(i + 1) == "jobs/s") v = $i; t[$1, ++nt[$1]] = v }
  /latency/   { for (i = 1; i <= NF; i++) { if ($i ~ /^p50=/) { sub("p50=", "", $i); p50[$1, ++n50[$1]] = $i }
                                            if ($i ~ /^p99=/) { sub("p99=", "", $i); p99[$1, ++n99[$1]] = $i } } }
  /rss_mb/    { for (i = 1; i <= NF; i++) if ($i ~ /^peak=/) { sub("peak=", "", $i); rss[$1, ++nr[$1]] = $i } }
  END {
    split("fl gw mw ap", sys, " ")
    for (k = 1; k <= 4; k++) { s = sys[k]
      delete a; for (i = 1; i <= nt[s]; i++) a[i] = t[s, i]; T[s] = median(a, nt[s])
      delete a; for (i = 1; i <= n50[s]; i++) a[i] = p50[s, i]; P50[s] = median(a, n50[s])
      delete a; for (i = 1; i <= n99[s]; i++) a[i] = p99[s, i]; P99[s] = median(a, n99[s])
      delete a; for (i = 1; i <= nr[s]; i++) a[i] = rss[s, i]; R[s] = nr[s] ? median(a, nr[s]) : 0 }
    printf "\nmedians over %d rounds: floor %.0f jobs/s | graphile-worker %.0f jobs/s p50=%.2f p99=%.2f | memwarden %.0f jobs/s p50=%.2f p99=%.2f", nt["mw"], T["fl"], T["gw"], P50["gw"], P99["gw"], T["mw"], P50["mw"], P99["mw"]
    if (apalis == 1) printf " | apalis-postgres %.0f jobs/s p50=%.2f p99=%.2f", T["ap"], P50["ap"], P99["ap"]
    printf "\nfractions of the floor: memwarden %.0f%% (goal >= 60%%), graphile-worker %.0f%%", 100 * T["mw"] / T["fl"], 100 * T["gw"] / T["fl"]
    if (apalis == 1) printf ", apalis-postgres %.0f%%", 100 * T["ap"] / T["fl"]
    printf "\nratios to graphile-worker: throughput %.2fx (goal >= 2x), p50 %.2f (goal <= 0.6), p99 %.2f (goal <= 0.5)\n", T["mw"] / T["gw"], P50["mw"] / P50["gw"], P99["mw"] / P99["gw"]
    if (apalis == 1) {
      printf "apalis-postgres to graphile-worker: throughput %.2fx, p50 %.2f, p99 %.2f\n", T["ap"] / T["gw"], P50["ap"] / P50["gw"], P99["ap"] / P99["gw"]
      printf "memwarden to apalis-postgres: throughput %.2fx, p50 %.2f, p99 %.2f\n", T["mw"] / T["ap"], P50["mw"] / P50["ap"], P99["mw"] / P99["ap"]
    }
    if (R["mw"] > 0) printf "peak RSS of the bench process (median VmHWM): memwarden %.1f MiB", R["mw"]
    if (R["mw"] > 0 && apalis == 1) printf ", apalis-postgres %.1f MiB", R["ap"]
    if (R["mw"] > 0) printf "\n"
  }' "$out"
rm -f "$out"
