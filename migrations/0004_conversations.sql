-- Conversations, their entries, attachments and reference-counted blobs (spec/jobs.md).
-- The memory service writes these; memwarden evicts soft-deleted rows past a retention period.

CREATE TABLE conversations (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id   text        NOT NULL,
    title      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
-- Eviction's scan: soft-deleted rows by age. Live rows are not in it.
CREATE INDEX conversations_deleted_idx ON conversations (deleted_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX conversations_owner_idx ON conversations (owner_id, created_at);

CREATE TABLE conversation_entries (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role            text        NOT NULL,
    content         text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversation_entries_conversation_idx ON conversation_entries (conversation_id);

-- One row per stored file; `refcount` counts the attachments that point at it. The bytes live
-- in the blob directory (config `blobs.dir`) under `storage_key`.
CREATE TABLE blobs (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sha256      text   NOT NULL UNIQUE,
    size_bytes  bigint NOT NULL CHECK (size_bytes >= 0),
    refcount    int    NOT NULL DEFAULT 0 CHECK (refcount >= 0),
    storage_key text   NOT NULL UNIQUE
);

CREATE TABLE attachments (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id        text        NOT NULL,
    conversation_id uuid REFERENCES conversations (id) ON DELETE CASCADE,
    blob_id         uuid REFERENCES blobs (id),
    filename        text        NOT NULL,
    content_type    text,
    status          text        NOT NULL DEFAULT 'linked' CHECK (status IN ('linked', 'unlinked')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE INDEX attachments_conversation_idx ON attachments (conversation_id);
CREATE INDEX attachments_deleted_idx ON attachments (deleted_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX attachments_blob_idx ON attachments (blob_id);
