-- The memory store (spec/jobs.md): memories and what enrichment derives from them. These live
-- in schema public, where the memory service writes; memwarden's own tables stay in 

CREATE TABLE memories (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id           text        NOT NULL,
    memory_type        text        NOT NULL DEFAULT 'Memory',
    content            text        NOT NULL,
    metadata           jsonb       NOT NULL DEFAULT '{}',
    tags               text[]      NOT NULL DEFAULT '{}',
    importance         real        NOT NULL DEFAULT 0.5,
    -- sha256 hex of content, kept by memories_content_hash(): an embedding records the hash it
    -- was computed from, so drift is a comparison, not a recomputation.
    content_hash       text        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    -- NULL means "not enriched for the current content": a content change clears it.
    enriched_at        timestamptz,
    enrichment_version int         NOT NULL DEFAULT 0
);

-- PRECEDED_BY (the owner's memories just before one) and the owner boundary of SIMILAR_TO.
CREATE INDEX memories_owner_created_idx ON memories (owner_id, created_at, id)
    WHERE deleted_at IS NULL;

-- A pattern's recent examples (EXEMPLIFIES).
CREATE INDEX memories_type_created_idx ON memories (memory_type, created_at, id)
    WHERE deleted_at IS NULL;

-- The catch-up schedule: memories never enriched (or whose content changed since), and those
-- enriched by an older pipeline version. Its query ORs the two, so both can be bitmap-scanned.
CREATE INDEX memories_unenriched_idx ON memories (id)
    WHERE deleted_at IS NULL AND (enriched_at IS NULL OR updated_at > enriched_at);
CREATE INDEX memories_enrichment_version_idx ON memories (enrichment_version)
    WHERE deleted_at IS NULL;

-- The vector index built into PostgreSQL: one embedding per memory, with the model, the
-- dimensions and the content hash it was computed from.
CREATE TABLE memory_embeddings (
    memory_id    uuid        NOT NULL UNIQUE REFERENCES memories (id) ON DELETE CASCADE,
    model        text        NOT NULL,
    dims         int         NOT NULL CHECK (dims > 0),
    embedding    real[]      NOT NULL CHECK (cardinality(embedding) = dims),
    content_hash text        NOT NULL,
    embedded_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memory_entities (
    memory_id uuid NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    category  text NOT NULL CHECK (category IN ('person', 'organization', 'project', 'tool',
        'concept', 'email', 'url', 'handle', 'hashtag', 'date')),
    value     text NOT NULL,
    slug      text NOT NULL,
    PRIMARY KEY (memory_id, category, slug)
);

-- PRECEDED_BY and SIMILAR_TO join two memories; EXEMPLIFIES joins a memory to a pattern, so
-- dst_id has no foreign key (memories_drop_inbound_edges cleans up after hard deletes).
CREATE TABLE memory_edges (
    src_id uuid NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    dst_id uuid NOT NULL,
    kind   text NOT NULL CHECK (kind IN ('PRECEDED_BY', 'SIMILAR_TO', 'EXEMPLIFIES')),
    weight real NOT NULL DEFAULT 1,
    count  int  NOT NULL DEFAULT 1,
    PRIMARY KEY (src_id, dst_id, kind)
);
-- Inbound edges: a pattern's members, and the cleanup when a memory is hard-deleted.
CREATE INDEX memory_edges_dst_idx ON memory_edges (dst_id, kind);

CREATE TABLE patterns (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    memory_type  text NOT NULL UNIQUE,
    terms        text[] NOT NULL DEFAULT '{}',
    confidence   real NOT NULL DEFAULT 0.35 CHECK (confidence BETWEEN 0 AND 1),
    observations int  NOT NULL DEFAULT 0 CHECK (observations >= 0)
);

-- The content hash is the database's to keep, so plain SQL writers cannot get it wrong: it is
-- recomputed whenever content (or the hash itself) is written. A content change also marks
-- the memory as not enriched and bumps updated_at (unless the writer set it), which is what
-- the catch-up schedule looks for if the enrichment job for the change was absorbed by a
-- job for the same memory that was already running.
CREATE FUNCTION memories_content_hash() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    NEW.content_hash := encode(sha256(convert_to(NEW.content, 'UTF8')), 'hex');
    IF TG_OP = 'UPDATE' AND NEW.content IS DISTINCT FROM OLD.content THEN
        NEW.enriched_at := NULL;
        IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
            NEW.updated_at := now();
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER memories_content_hash
    BEFORE INSERT OR UPDATE OF content, content_hash ON memories
    FOR EACH ROW EXECUTE FUNCTION memories_content_hash();

-- Every new memory and every content change gets an enrichment job in the writer's own
-- transaction, so no write is missed. One job per memory (unique key), at priority 10 so that
-- fresh writes go ahead of bulk work (priority 0).
CREATE FUNCTION memories_enqueue_enrichment() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM enqueue('enrichment', jsonb_build_object('memory_id', NEW.id), 'default',
                              10::smallint, NULL, 25, 'enrichment:' || NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER memories_enqueue_enrichment_insert
    AFTER INSERT ON memories
    FOR EACH ROW WHEN (NEW.deleted_at IS NULL)
    EXECUTE FUNCTION memories_enqueue_enrichment();

CREATE TRIGGER memories_enqueue_enrichment_update
    AFTER UPDATE OF content ON memories
    FOR EACH ROW WHEN (OLD.content IS DISTINCT FROM NEW.content AND NEW.deleted_at IS NULL)
    EXECUTE FUNCTION memories_enqueue_enrichment();

-- Hard deletes (eviction) take the inbound PRECEDED_BY/SIMILAR_TO edges with them; outbound
-- ones go by the foreign key. One statement per deleting statement, so batches stay cheap.
CREATE FUNCTION memories_drop_inbound_edges() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM memory_edges e USING gone g
    WHERE e.dst_id = g.id AND e.kind IN ('PRECEDED_BY', 'SIMILAR_TO');
    RETURN NULL;
END
$$;

CREATE TRIGGER memories_drop_inbound_edges
    AFTER DELETE ON memories
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION memories_drop_inbound_edges();

-- Eviction's scan of soft-deleted memories by age; live rows are not in it.
CREATE INDEX memories_deleted_idx ON memories (deleted_at) WHERE deleted_at IS NOT NULL;
