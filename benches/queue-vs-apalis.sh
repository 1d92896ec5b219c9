#!/usr/bin/env bash
# benches/queue-vs-graphile.sh with apalis-postgres in every round (benches/apalis, its own
# cargo project, so memwarden gains no dependency): the floor, graphile-worker, apalis-postgres
# and memwarden, same N, C and S, alternated ROUNDS times, then the medians and the ratios.
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres benches/queue-vs-apalis.sh [ROUNDS]
set -euo pipefail
APALIS=1 exec "$(dirname "$0")/queue-vs-graphile.sh" "$@"
