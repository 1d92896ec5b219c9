-- With `store.kind = "memory-service"`, memwarden re-embeds and repairs a Memory Service
-- database's `entry_embeddings`, which keep no content hash. The hash of the `indexed_content`
-- each embedding was computed from is kept here, in memwarden's schema, so that a scan can
-- tell a stale embedding; Memory Service's tables are never altered. No foreign keys: the
-- entries live in another schema, owned by another service, and are hash-partitioned.
CREATE TABLE memory_service_embedding_hashes (
    entry_id              uuid        NOT NULL,
    conversation_group_id uuid        NOT NULL,
    content_hash          text        NOT NULL,
    model                 text        NOT NULL,
    recorded_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entry_id, conversation_group_id)
);

-- Eviction forgets a group's hashes with the group.
CREATE INDEX memory_service_embedding_hashes_group
    ON memory_service_embedding_hashes (conversation_group_id);
