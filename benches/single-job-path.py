#!/usr/bin/env python3
"""The single-job path (enqueue, NOTIFY, claim) measured from outside memwarden.

  client  A minimal client does what the daemon does for one job: `memwarden.enqueue`, wait on
          LISTEN, then memwarden's claim statement, alternately on the LISTEN connection and on
          a second one. Prints the NOTIFY arrival, both claims' round trips, and the time from
          the enqueue's transaction start to the claim's (both `now()`, read from the rows).
  daemon  The same enqueue-to-claim span for a running `memwarden run` on the same database:
          `enrichment` jobs for memories that do not exist, which the daemon skips at once.

Jobs are enqueued one at a time, 5-15 ms apart, as in `memwarden bench queue`. The database
must be migrated (`memwarden migrate`). Needs psycopg2 (`pip install psycopg2-binary`).

  benches/single-job-path.py client "host=127.0.0.1 user=postgres dbname=wake" [SAMPLES]
  benches/single-job-path.py daemon "host=127.0.0.1 user=postgres dbname=wake" [SAMPLES]
"""
import random
import select
import sys
import time
import uuid

import psycopg2
import psycopg2.errors

# memwarden's claim, as src/queue/claimer.rs sends it.
CLAIM = """PREPARE claim(text, text[], bigint, text, float8) AS
WITH picked AS (
  SELECT id FROM memwarden.jobs
  WHERE queue = $1 AND status IN ('available', 'retryable') AND run_at <= now() AND kind = ANY($2)
  ORDER BY priority DESC, run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
UPDATE memwarden.jobs j SET status = 'running', attempt = j.attempt + 1, lease_owner = $4,
  lease_expires_at = now() + make_interval(secs => $5), started_at = now(), cancel_requested_at = NULL
WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING j.id, j.kind, j.queue, j.args, j.attempt, j.max_attempts, j.run_at, j.priority"""

SPAN = """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at) * 1000),
  percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at) * 1000), count(*)
FROM memwarden.jobs WHERE kind = %s AND created_at >= %s AND started_at IS NOT NULL"""


def connect(dsn, options=""):
    conn = psycopg2.connect(dsn, options=options)
    conn.autocommit = True
    return conn


def pause():
    time.sleep(random.uniform(0.005, 0.015))


def quantiles(name, values):
    values.sort()
    print(f"{name}: p50={values[len(values) // 2]:.3f} p90={values[int(len(values) * 0.9)]:.3f} ms (n={len(values)})")


def client(dsn, samples):
    # The queue pool's planning mode (docs/operations.md, "Connections").
    opts = "-c plan_cache_mode=force_custom_plan"
    enq, listen, other = connect(dsn), connect(dsn, opts), connect(dsn, opts)
    e, lc = enq.cursor(), listen.cursor()
    lc.execute("LISTEN memwarden_jobs")
    for conn in (listen, other):
        conn.cursor().execute(CLAIM)
    e.execute("SELECT now()")
    since = e.fetchone()[0]
    kind = f"probe-{uuid.uuid4().hex[:8]}"
    times = {"notify arrives": [], "claim on the LISTEN connection": [], "claim on another connection": []}
    for i in range(samples):
        t0 = time.perf_counter()
        e.execute("SELECT memwarden.enqueue(%s, jsonb_build_object('i', %s::bigint))", (kind, i))
        while not listen.notifies:
            select.select([listen], [], [], 5)
            listen.poll()
        listen.notifies.clear()
        t1 = time.perf_counter()
        on_listener = i % 2 == 1
        cur = lc if on_listener else other.cursor()
        cur.execute("EXECUTE claim('default', ARRAY[%s], 24, 'probe', 30)", (kind,))
        if len(cur.fetchall()) != 1:
            sys.exit(f"sample {i}: the claim did not return the job just enqueued")
        t2 = time.perf_counter()
        times["notify arrives"].append((t1 - t0) * 1000)
        key = "claim on the LISTEN connection" if on_listener else "claim on another connection"
        times[key].append((t2 - t1) * 1000)
        pause()
    for name, values in times.items():
        quantiles(name, values)
    span(e, kind, since, "client")
    e.execute("UPDATE memwarden.jobs SET status = 'succeeded', lease_owner = NULL, lease_expires_at = NULL WHERE kind = %s", (kind,))


def daemon(dsn, samples):
    conn = connect(dsn)
    cur = conn.cursor()
    cur.execute("SELECT now()")
    since = cur.fetchone()[0]
    for _ in range(samples):
        cur.execute("SELECT memwarden.enqueue('enrichment', jsonb_build_object('memory_id', %s::uuid))", (str(uuid.uuid4()),))
        pause()
    time.sleep(1)
    span(cur, "enrichment", since, "daemon")


def span(cur, kind, since, who):
    cur.execute(SPAN, (kind, since))
    p50, p90, n = cur.fetchone()
    if n == 0:
        sys.exit(f"{who}: no job was claimed; is `memwarden run` working on this database?")
    print(f"{who}: enqueue start to claim start p50={p50:.3f} p90={p90:.3f} ms (n={n})")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("client", "daemon"):
        sys.exit(__doc__)
    try:
        n = int(sys.argv[3]) if len(sys.argv) > 3 else 600
    except ValueError:
        sys.exit(f"samples must be a whole number, not {sys.argv[3]!r}")
    if n < 2:
        sys.exit("samples must be at least 2 (the client alternates two connections)")
    try:
        {"client": client, "daemon": daemon}[sys.argv[1]](sys.argv[2], n)
    except (psycopg2.errors.UndefinedTable, psycopg2.errors.UndefinedFunction) as e:
        sys.exit(f"single-job-path: {str(e).splitlines()[0]}; run `memwarden migrate` on it first")
    except psycopg2.Error as e:
        sys.exit(f"single-job-path: {str(e).strip()}")
