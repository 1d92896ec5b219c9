-- The queue depth the gauges show, counted by one replica and read by the others
-- (src/queue/depth.rs). A count of a million pending jobs is a few hundred milliseconds of
-- scan; every replica counting for itself multiplied that by the replicas. One row: the
-- counts per queue, and until when they stand (the depth interval, or fifty times the count's
-- own length when that is longer). Unlogged: after a crash it is empty, and the next tick
-- counts again.
CREATE UNLOGGED TABLE queue_depth_snapshot (
    id          boolean     PRIMARY KEY DEFAULT true CHECK (id),
    counted_at  timestamptz NOT NULL,
    fresh_until timestamptz NOT NULL,
    counts      jsonb       NOT NULL
);
