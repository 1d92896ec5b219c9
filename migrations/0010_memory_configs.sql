-- Compozy's memory configurations (`/api/v0/memories`), scoped by project, and the reference
-- a conversation holds to the one that governs it. `config` is the validated configuration
-- (memwarden_jobs::memory_config::MemoryConfig); `etag` is the sha256 of its canonical JSON.
CREATE TABLE memory_configs (
    project    text        NOT NULL,
    id         text        NOT NULL,
    config     jsonb       NOT NULL,
    etag       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, id)
);

-- A NOT NULL column with a constant default and a nullable one are catalog changes only. The
-- foreign key is added NOT VALID and validated apart, so the check of existing rows (all
-- without a configuration) takes a lock that does not block the memory service's writes.
ALTER TABLE conversations
    ADD COLUMN memory_config_project text NOT NULL DEFAULT 'default',
    ADD COLUMN memory_config_id      text;
ALTER TABLE conversations
    ADD CONSTRAINT conversations_memory_config_fk
    FOREIGN KEY (memory_config_project, memory_config_id) REFERENCES memory_configs (project, id)
    NOT VALID;
ALTER TABLE conversations VALIDATE CONSTRAINT conversations_memory_config_fk;
CREATE INDEX conversations_memory_config_idx ON conversations (memory_config_project, memory_config_id)
    WHERE memory_config_id IS NOT NULL;
