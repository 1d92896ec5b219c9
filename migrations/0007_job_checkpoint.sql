-- A resumable job's saved state (reembed's cursor and counts): written by the worker holding
-- the lease after each batch, read by the next attempt so a retry continues where the last
-- one stopped. It goes with the job when the job is purged.
ALTER TABLE memwarden.jobs ADD COLUMN checkpoint jsonb;
