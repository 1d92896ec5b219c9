-- `enqueue` keeps one job per unique key among available, running and retryable jobs, and
-- answers a taken key with the job that holds it. For the memory-policy triggers that lost
-- writes (measured 2026-12-02 with `memwarden bench memory --one-entry-per-write`: 4,825 of
-- 30,000 entries left unredacted): an entry written while its conversation's
-- `memory-privacy` job was running joined that job, which had already read the conversation;
-- and one written while the job was available could join it just before a worker claimed it
-- and read the conversation ahead of the writer's commit.
--
-- `enqueue_for_writes` is for a job that must see the caller's own writes. A job that holds
-- the key and has not started is locked until the caller commits, so no worker claims it
-- first (the claim skips locked rows). A running one gives up its key (graphile-worker's
-- rule for a locked job with the same job_key), and a new job is enqueued behind it; the
-- policy jobs lock their conversation, so the two do not run over each other.
CREATE FUNCTION enqueue_for_writes(
    p_kind text,
    p_args jsonb,
    p_queue text,
    p_priority smallint,
    p_max_attempts int,
    p_unique_key text
) RETURNS uuid
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    found_id uuid;
    found_status text;
BEGIN
    LOOP
        INSERT INTO jobs (id, kind, queue, args, priority, run_at, max_attempts, unique_key)
        VALUES (uuid_v7(), p_kind, p_queue, COALESCE(p_args, '{}'), p_priority, now(),
                p_max_attempts, p_unique_key)
        ON CONFLICT (kind, unique_key) WHERE unique_key IS NOT NULL AND status IN ('available', 'running', 'retryable')
        DO NOTHING
        RETURNING id INTO found_id;
        IF found_id IS NOT NULL THEN
            PERFORM pg_notify(current_schema() || '_jobs', p_queue);
            RETURN found_id;
        END IF;
        SELECT id, status INTO found_id, found_status FROM jobs
         WHERE kind = p_kind AND unique_key = p_unique_key
           AND status IN ('available', 'running', 'retryable')
         FOR UPDATE;
        IF found_id IS NULL THEN
            CONTINUE; -- it ended meanwhile: the key is free again
        END IF;
        IF found_status <> 'running' THEN
            RETURN found_id; -- locked until we commit: it runs after our writes are visible
        END IF;
        UPDATE jobs SET unique_key = NULL WHERE id = found_id;
    END LOOP;
END
$$;

-- The summary a flush writes is redacted already and within the limits: the flush marks its
-- transaction (`memwarden.policy_write`), and its insert enqueues nothing. Without the mark it
-- would take the running flush's key and queue a flush that finds nothing to do.
CREATE OR REPLACE FUNCTION conversation_entries_enqueue_policies() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF current_setting('memwarden.policy_write', true) = 'on' THEN
        RETURN NULL;
    END IF;
    PERFORM enqueue_for_writes('memory-privacy', jsonb_build_object('conversation_id', c.id),
                               'default', 10::smallint, 25, 'memory-privacy:' || c.id)
       FROM conversations c
       JOIN memory_configs m ON m.project = c.memory_config_project AND m.id = c.memory_config_id
      WHERE c.id IN (SELECT DISTINCT conversation_id FROM added)
        AND jsonb_typeof(m.config -> 'privacy_policy') = 'object';
    PERFORM enqueue_for_writes('memory-flush', jsonb_build_object('conversation_id', c.id),
                               'default', 5::smallint, 25, 'memory-flush:' || c.id)
       FROM conversations c
       JOIN memory_configs m ON m.project = c.memory_config_project AND m.id = c.memory_config_id
      WHERE c.id IN (SELECT DISTINCT conversation_id FROM added)
        AND (m.config ? 'max_messages' OR m.config ? 'max_tokens'
             OR (m.config ? 'model_context_size' AND m.config ? 'max_context_ratio'));
    RETURN NULL;
END
$$;
