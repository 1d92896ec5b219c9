//! A Memory Service database: the statements that evict its archived conversation groups and
//! its orphaned attachments, with what Memory Service itself writes when it evicts.
//!
//! A group goes whole (`DELETE FROM conversation_groups`): its conversations, entries,
//! memberships, ancestry and `entry_embeddings` follow by Memory Service's own cascades. In
//! the same transaction, as Memory Service's `/v1/admin/evict` does, each group gets a
//! `vector_store_delete` task (body `{"conversationGroupId": ...}`) and each conversation a
//! `deleted` / `conversation` outbox event (data `conversation`, `conversation_group`,
//! `members`), so its vector cleanup and event relay see the same thing either way.
//!
//! An attachment is orphaned when its entry is gone, when it expired without being linked, or
//! when it was archived before the cutoff. Rows a Memory Service transaction has locked (an
//! attachment being linked to an entry not yet committed) are skipped, not waited for.

use super::batch::Statements;
use super::release::Release;
use super::{EvictionInputError, ResourceType};
use crate::memory_service::{AttachmentStore, MemoryServiceStore};

/// The groups due, oldest archived first, from the cursor `$3` on (as memwarden's own store).
fn due_groups(s: &str) -> String {
    format!(
        "c AS (SELECT id, archived_at FROM {s}.conversation_groups \
         WHERE archived_at IS NOT NULL AND archived_at < $1 \
           AND archived_at >= COALESCE($3, '-infinity'::timestamptz) \
         ORDER BY archived_at LIMIT $2)"
    )
}

fn orphaned(s: &str) -> String {
    format!(
        "((a.entry_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {s}.entries e WHERE e.id = a.entry_id)) \
          OR (a.entry_id IS NULL AND a.expires_at IS NOT NULL AND a.expires_at < now()) \
          OR (a.archived_at IS NOT NULL AND a.archived_at < $1))"
    )
}

fn groups(s: &str) -> Statements {
    let due = due_groups(s);
    Statements {
        count: format!(
            "WITH g AS (SELECT id FROM {s}.conversation_groups \
                        WHERE archived_at IS NOT NULL AND archived_at < $1) \
             SELECT (SELECT count(*) FROM g), \
                    (SELECT count(*) FROM {s}.conversations WHERE conversation_group_id IN (SELECT id FROM g))"
        ),
        warm: format!(
            "WITH {due} SELECT \
               (SELECT count(channel) FROM {s}.entries WHERE conversation_group_id IN (SELECT id FROM c)), \
               (SELECT count(owner_user_id) FROM {s}.conversations WHERE conversation_group_id IN (SELECT id FROM c))"
        ),
        // A group restored since `c` read it fails the recheck and stays. Every part reads the
        // statement's snapshot, so the conversations and members are those of before the
        // cascade, which runs at the statement's end.
        batch: format!(
            "WITH {due}, \
             d AS (DELETE FROM {s}.conversation_groups g WHERE g.id IN (SELECT id FROM c) \
                   AND g.archived_at IS NOT NULL AND g.archived_at < $1 RETURNING g.id), \
             cv AS (SELECT id, conversation_group_id, created_at FROM {s}.conversations \
                    WHERE conversation_group_id IN (SELECT id FROM d)), \
             t AS (INSERT INTO {s}.tasks (id, task_type, task_body) \
                   SELECT gen_random_uuid(), 'vector_store_delete', \
                          jsonb_build_object('conversationGroupId', d.id::text) FROM d RETURNING 1), \
             o AS (INSERT INTO {s}.outbox_events (event, kind, data) \
                   SELECT 'deleted', 'conversation', jsonb_build_object( \
                            'conversation', cv.id, 'conversation_group', cv.conversation_group_id, \
                            'members', (SELECT jsonb_agg(m.user_id ORDER BY m.created_at, m.user_id) \
                                        FROM {s}.conversation_memberships m \
                                        WHERE m.conversation_group_id = cv.conversation_group_id)) \
                   FROM cv ORDER BY cv.created_at, cv.id RETURNING 1), \
             h AS (DELETE FROM memory_service_embedding_hashes \
                   WHERE conversation_group_id IN (SELECT id FROM d) RETURNING 1) \
             SELECT (SELECT count(*) FROM c), (SELECT max(archived_at) FROM c), (SELECT count(*) FROM d), \
                    (SELECT count(*) FROM cv), \
                    (SELECT count(*) FROM {s}.entries WHERE conversation_group_id IN (SELECT id FROM d)), \
                    0::bigint, '{{}}'::text[], '{{}}'::bigint[]"
        ),
        grouped: true,
        release: Release::Nothing,
    }
}

fn attachments(s: &str, release: Release) -> Statements {
    let orphaned = orphaned(s);
    // Oldest first by creation, from the cursor on; every candidate is deleted, so the cursor
    // never passes one by.
    let due = format!(
        "c AS (SELECT a.id, a.created_at FROM {s}.attachments a WHERE {orphaned} \
               AND a.created_at >= COALESCE($3, '-infinity'::timestamptz) \
         ORDER BY a.created_at LIMIT $2 FOR UPDATE OF a SKIP LOCKED)"
    );
    Statements {
        count: format!("SELECT count(*), 0::bigint FROM {s}.attachments a WHERE {orphaned}"),
        warm: format!(
            "SELECT count(a.storage_key) FROM {s}.attachments a WHERE {orphaned} \
               AND a.created_at >= COALESCE($3, '-infinity'::timestamptz) AND $2 > 0"
        ),
        batch: format!(
            "WITH {due}, \
             d AS (DELETE FROM {s}.attachments a WHERE a.id IN (SELECT id FROM c) \
                   RETURNING a.storage_key, a.size), \
             k AS (SELECT storage_key, max(COALESCE(size, 0)) AS size FROM d \
                   WHERE storage_key IS NOT NULL GROUP BY storage_key) \
             SELECT (SELECT count(*) FROM c), (SELECT max(created_at) FROM c), 0::bigint, 0::bigint, \
                    0::bigint, (SELECT count(*) FROM d), \
                    COALESCE((SELECT array_agg(storage_key ORDER BY storage_key) FROM k), '{{}}'), \
                    COALESCE((SELECT array_agg(size ORDER BY storage_key) FROM k), '{{}}')"
        ),
        grouped: false,
        release,
    }
}

/// What eviction runs for one resource type on a Memory Service database.
pub(super) fn statements(
    t: ResourceType,
    store: &MemoryServiceStore,
) -> Result<Statements, EvictionInputError> {
    let s = store.schema.as_str();
    match t {
        ResourceType::Conversations => Ok(groups(s)),
        ResourceType::Attachments => {
            let release = match &store.attachments {
                AttachmentStore::Filesystem { dir } => Release::Files {
                    schema: s.into(),
                    dir: dir.clone(),
                },
                AttachmentStore::LargeObjects => Release::LargeObjects { schema: s.into() },
            };
            Ok(attachments(s, release))
        }
        ResourceType::Memories => Err(EvictionInputError::NotInStore("memories")),
    }
}
