-- The durable job queue (spec/queue.md). Like every migration here, it runs with memwarden's
-- schema (`database.schema`, default memwarden) first on the search path, so every object it
-- creates lands there and nothing of memwarden's lands in public.

-- UUIDv7 in SQL (PostgreSQL 15 has none built in): 48 bits of Unix milliseconds, then random.
-- The one-argument form makes the id of a given instant (for backdated rows and id ranges).
CREATE FUNCTION uuid_v7(at timestamptz) RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
            PLACING substring(int8send((extract(epoch FROM at) * 1000)::bigint) FROM 3)
            FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$;

CREATE FUNCTION uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
            PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
            FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$;

-- The lowest v7 id of an instant: an index bound for "created before".
CREATE FUNCTION uuid_v7_floor(at timestamptz) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT (encode(substring(int8send((extract(epoch FROM at) * 1000)::bigint) FROM 3), 'hex')
            || '70000000000000000000')::uuid
$$;

-- Ids are UUIDv7: they sort by creation time, which lists (newest first) and purge (by id
-- range) rely on. Rows inserted by hand get one from the default.
CREATE TABLE jobs (
    id               uuid PRIMARY KEY DEFAULT uuid_v7(),
    kind             text        NOT NULL,
    queue            text        NOT NULL DEFAULT 'default',
    args             jsonb       NOT NULL DEFAULT '{}',
    status           text        NOT NULL DEFAULT 'available'
        CHECK (status IN ('available', 'running', 'retryable', 'succeeded', 'failed', 'canceled')),
    priority         smallint    NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    attempt          int         NOT NULL DEFAULT 0,
    max_attempts     int         NOT NULL DEFAULT 25 CHECK (max_attempts > 0),
    unique_key       text,
    lease_owner      text,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    last_error       text,
    progress         smallint    NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    result           jsonb,
    -- Set by a cancel of a running job; the worker holding it sees it and stops.
    cancel_requested_at timestamptz,
    -- A resumable job's saved state (reembed's cursor and counts): written by the worker
    -- holding the lease after each batch, read by the next attempt so a retry continues where
    -- the last one stopped. It goes with the job when the job is purged.
    checkpoint       jsonb
) WITH (
    -- A queue table churns: vacuum it early and often, and leave room for HOT updates.
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_vacuum_insert_scale_factor = 0.05
);

-- The claim path: the best claimable jobs of a queue, in claim order.
CREATE INDEX jobs_claim_idx ON jobs (queue, priority DESC, run_at, id)
    WHERE status IN ('available', 'retryable');

-- At most one non-terminal job per (kind, unique_key).
CREATE UNIQUE INDEX jobs_unique_idx ON jobs (kind, unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('available', 'running', 'retryable');

-- The reaper: running jobs by lease expiry.
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE status = 'running';

-- Purge has no index of its own: a job finishes after it is created, so the jobs that
-- finished before a cutoff all have ids (v7, time-ordered) below the cutoff's, and purge walks
-- the primary key up to there. An index on finished_at would cost an insert on every completion.

-- Failed jobs per queue, for /v1/status (few rows, so a cheap partial index).
CREATE INDEX jobs_failed_idx ON jobs (queue) WHERE status = 'failed';

-- No index on kind: every claim and completion is a non-HOT update (status is in the
-- partial indexes' predicates), so each index costs two inserts per job. Lists walk the
-- primary key (uuid v7, so newest first) and filter.

-- One row per finished attempt. No foreign key to jobs: the insert path stays cheap, and
-- purge deletes attempts and references together with their job.
CREATE TABLE job_attempts (
    job_id      uuid        NOT NULL,
    attempt     int         NOT NULL,
    worker      text        NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    outcome     text        NOT NULL
        CHECK (outcome IN ('succeeded', 'failed', 'timed_out', 'interrupted', 'lost', 'canceled')),
    error       text,
    PRIMARY KEY (job_id, attempt)
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.05);

-- Which resources a job touches ("which jobs touched memory X").
CREATE TABLE job_references (
    job_id        uuid NOT NULL,
    resource_type text NOT NULL,
    resource_id   text NOT NULL,
    PRIMARY KEY (job_id, resource_type, resource_id)
);
CREATE INDEX job_references_resource_idx ON job_references (resource_type, resource_id);

-- Cron schedules, from config and from the control port.
CREATE TABLE schedules (
    name         text PRIMARY KEY,
    cron         text        NOT NULL,
    kind         text        NOT NULL,
    args         jsonb       NOT NULL DEFAULT '{}',
    queue        text        NOT NULL DEFAULT 'default',
    enabled      boolean     NOT NULL DEFAULT true,
    timezone     text,
    source       text        NOT NULL DEFAULT 'api' CHECK (source IN ('default', 'config', 'api')),
    -- The last tick enqueued: the row lock on this update is what makes a tick fire once
    -- across replicas.
    last_tick_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Paused queues. A queue with no row is running.
CREATE TABLE queues (
    name       text PRIMARY KEY,
    paused     boolean     NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Enqueue from SQL, for the memory service's triggers: one job, a NOTIFY to wake workers, and
-- the existing id back when the unique key is taken. It runs with the search path it was
-- created with (memwarden's schema first), whatever the caller's, and wakes the workers of
-- this schema on `<schema>_jobs`.
CREATE FUNCTION enqueue(
    p_kind text,
    p_args jsonb DEFAULT '{}',
    p_queue text DEFAULT 'default',
    p_priority smallint DEFAULT 0,
    p_run_at timestamptz DEFAULT NULL,
    p_max_attempts int DEFAULT 25,
    p_unique_key text DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    new_id uuid;
BEGIN
    INSERT INTO jobs (id, kind, queue, args, priority, run_at, max_attempts, unique_key)
    VALUES (uuid_v7(), p_kind, p_queue, COALESCE(p_args, '{}'), p_priority,
            COALESCE(p_run_at, now()), p_max_attempts, p_unique_key)
    ON CONFLICT (kind, unique_key) WHERE unique_key IS NOT NULL AND status IN ('available', 'running', 'retryable')
    DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN
        SELECT id INTO new_id FROM jobs
        WHERE kind = p_kind AND unique_key = p_unique_key
        ORDER BY (status IN ('available', 'running', 'retryable')) DESC, created_at DESC
        LIMIT 1;
        RETURN new_id;
    END IF;
    PERFORM pg_notify(current_schema() || '_jobs', p_queue);
    RETURN new_id;
END
$$;
