#!/usr/bin/env bash
# Side by side on ONE PostgreSQL: graphile-worker (batched, ../shared/bench/peers/run.sh gw)
# and `memwarden bench queue`, alternated ROUNDS times so both see the same machine weather.
# Prints every run, then the medians and the ratios the performance goal is stated in.
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres benches/queue-vs-graphile.sh [ROUNDS]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${1:-5}"
: "${DATABASE_URL:?set DATABASE_URL to a PostgreSQL you may create databases on}"
export N="${N:-20000}" C="${C:-24}" S="${S:-300}"
peers="$here/../shared/bench/peers/run.sh"
[ -x "$peers" ] || { echo "missing $peers" >&2; exit 2; }
bin="$here/target/release/memwarden"
(cd "$here" && cargo build --release --quiet)
out=$(mktemp)
for r in $(seq 1 "$rounds"); do
  bash "$peers" gw | sed "s/^/gw  /" | tee -a "$out"
  "$bin" bench queue --jobs "$N" --concurrency "$C" --samples "$S" 2>/dev/null | sed "s/^/mw  /" | tee -a "$out"
done
awk '
  function median(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  /jobs\/s/   { for (i = 1; i <= NF; i++) if ($(i + 1) == "jobs/s") v = $i; t[$1, ++nt[$1]] = v }
  /latency/   { for (i = 1; i <= NF; i++) { if ($i ~ /^p50=/) { sub("p50=", "", $i); p50[$1, ++n50[$1]] = $i }
                                            if ($i ~ /^p99=/) { sub("p99=", "", $i); p99[$1, ++n99[$1]] = $i } } }
  END {
    for (s in nt) ; 
    split("gw mw", sys, " ")
    for (k = 1; k <= 2; k++) { s = sys[k]
      delete a; for (i = 1; i <= nt[s]; i++) a[i] = t[s, i]; T[s] = median(a, nt[s])
      delete a; for (i = 1; i <= n50[s]; i++) a[i] = p50[s, i]; P50[s] = median(a, n50[s])
      delete a; for (i = 1; i <= n99[s]; i++) a[i] = p99[s, i]; P99[s] = median(a, n99[s]) }
    printf "\nmedians over %d rounds: graphile-worker %.0f jobs/s p50=%.2f p99=%.2f | memwarden %.0f jobs/s p50=%.2f p99=%.2f\n", nt["gw"], T["gw"], P50["gw"], P99["gw"], T["mw"], P50["mw"], P99["mw"]
    printf "ratios: throughput %.2fx (goal >= 2.5x), p50 %.2f of graphile (goal < 0.5), p99 %.2f of graphile (goal < 1)\n", T["mw"] / T["gw"], P50["mw"] / P50["gw"], P99["mw"] / P99["gw"]
  }' "$out"
rm -f "$out"
