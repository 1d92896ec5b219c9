-- A memory's content hash is a stored generated column, so it matches its content however the
-- row was written. The trigger that kept it before is skipped by writers that bypass triggers
-- (a logical-replication subscriber, a restore with triggers disabled, a session with
-- session_replication_role = replica); a generated column is computed by every INSERT,
-- UPDATE and COPY, with or without triggers. Sync compares it with the hash an embedding
-- records, so drift written by any writer is found.
--
-- PostgreSQL marks convert_to() stable, not immutable, because its result depends on the
-- database's encoding; a database's encoding never changes, so over one database this is
-- immutable, which a generated column needs. The value is the one the trigger computed, so
-- no existing embedding turns stale.
CREATE FUNCTION content_sha256(content text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN encode(sha256(convert_to(content, 'UTF8')), 'hex');

DROP TRIGGER memories_content_hash ON memories;
DROP FUNCTION memories_content_hash();

ALTER TABLE memories
    DROP COLUMN content_hash,
    ADD COLUMN content_hash text NOT NULL GENERATED ALWAYS AS (content_sha256(content)) STORED;

-- What the trigger did besides the hash: a content change marks the memory as not enriched
-- and bumps updated_at (unless the writer set it), which the catch-up schedule looks for.
CREATE FUNCTION memories_content_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    NEW.enriched_at := NULL;
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER memories_content_changed
    BEFORE UPDATE OF content ON memories
    FOR EACH ROW WHEN (NEW.content IS DISTINCT FROM OLD.content)
    EXECUTE FUNCTION memories_content_changed();
