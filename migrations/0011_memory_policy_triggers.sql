-- Entries written to a conversation whose memory configuration has a privacy policy or limits
-- get a `memory-privacy` and a `memory-flush` job in the writer's own transaction, so no write
-- is missed. One statement-level trigger per inserting statement (a bulk insert of a thousand
-- entries costs one pass over its distinct conversations), one job per conversation (unique
-- keys `memory-privacy:<id>`, `memory-flush:<id>`). Privacy runs at priority 10, ahead of the
-- flush (5), so a summary is written from redacted text. The summary a flush inserts comes back
-- through here; its conversation's flush is then running, so the unique key holds it off.
CREATE FUNCTION conversation_entries_enqueue_policies() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM enqueue('memory-privacy', jsonb_build_object('conversation_id', c.id), 'default',
                    10::smallint, NULL, 25, 'memory-privacy:' || c.id)
       FROM conversations c
       JOIN memory_configs m ON m.project = c.memory_config_project AND m.id = c.memory_config_id
      WHERE c.id IN (SELECT DISTINCT conversation_id FROM added)
        AND jsonb_typeof(m.config -> 'privacy_policy') = 'object';
    PERFORM enqueue('memory-flush', jsonb_build_object('conversation_id', c.id), 'default',
                    5::smallint, NULL, 25, 'memory-flush:' || c.id)
       FROM conversations c
       JOIN memory_configs m ON m.project = c.memory_config_project AND m.id = c.memory_config_id
      WHERE c.id IN (SELECT DISTINCT conversation_id FROM added)
        AND (m.config ? 'max_messages' OR m.config ? 'max_tokens'
             OR (m.config ? 'model_context_size' AND m.config ? 'max_context_ratio'));
    RETURN NULL;
END
$$;

CREATE TRIGGER conversation_entries_enqueue_policies
    AFTER INSERT ON conversation_entries
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION conversation_entries_enqueue_policies();
