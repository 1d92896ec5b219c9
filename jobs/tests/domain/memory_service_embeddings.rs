//! Re-embedding and drift repair over a Memory Service database's `entry_embeddings`, with the
//! content hashes memwarden keeps for them in its own schema.

use std::sync::Arc;

use memwarden_jobs::bulk::Corpus;
use memwarden_jobs::memory_service::{AttachmentStore, EntryCorpus};
use memwarden_jobs::reembed::{reembed, BulkSettings, ReembedArgs};
use memwarden_jobs::sync::{sync, SyncArgs, SyncReport};
use memwarden_jobs::{HashEmbedder, NoCheckpoint, NoProgress};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::count;
use crate::memory_service::{embed, group, memory_service_db, store};

const DIMS: usize = 8;

fn corpus(pool: &PgPool) -> Arc<dyn Corpus> {
    Arc::new(EntryCorpus::new(
        pool.clone(),
        &store(AttachmentStore::LargeObjects),
    ))
}

async fn run_sync(pool: &PgPool, dry_run: bool) -> SyncReport {
    sync(
        corpus(pool),
        Arc::new(HashEmbedder::new(DIMS)),
        &SyncArgs {
            batch_size: 2,
            dry_run,
        },
        &BulkSettings::default(),
        &CancellationToken::new(),
        &NoProgress,
    )
    .await
    .unwrap()
}

fn sorted(mut ids: Vec<Uuid>) -> Vec<Uuid> {
    ids.sort();
    ids
}

/// Each entry's stored embedding: its model, and whether it is the embedder's vector of the
/// entry's `indexed_content` now.
async fn embeddings(pool: &PgPool) -> Vec<(Uuid, String, bool)> {
    let rows: Vec<(Uuid, String, String, Option<String>)> = sqlx::query_as(
        "SELECT v.entry_id, v.model, v.embedding::text, e.indexed_content \
         FROM public.entry_embeddings v \
         LEFT JOIN public.entries e ON e.id = v.entry_id AND e.conversation_group_id = v.conversation_group_id \
         ORDER BY v.entry_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let embedder = HashEmbedder::new(DIMS);
    rows.into_iter()
        .map(|(id, model, stored, content)| {
            let fresh = content.is_some_and(|c| {
                let want = embedder.embed_one(&c);
                let got: Vec<f32> = stored
                    .trim_matches(['[', ']'])
                    .split(',')
                    .map(|x| x.parse().unwrap())
                    .collect();
                got.len() == want.len() && got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6)
            });
            (id, model, fresh)
        })
        .collect()
}

#[tokio::test]
async fn sync_finds_each_kind_repairs_it_and_a_second_scan_finds_nothing() {
    let Some((_db, pool)) = memory_service_db().await else {
        return;
    };
    let (_, _, e) = group(&pool, None, 3).await;
    let (_, _, archived) = group(&pool, Some("1 hour"), 1).await;
    embed(&pool, e[0], "hash-v1", DIMS).await; // Memory Service's own: adopted, not judged
    embed(&pool, e[1], "text-embedding-ada-002", DIMS).await; // another model
    embed(&pool, e[2], "hash-v1", DIMS + 1).await; // another size
    embed(&pool, e[4], "hash-v1", DIMS).await; // its entry stops being indexed: orphaned
    sqlx::query("UPDATE public.entries SET indexed_content = NULL WHERE id = $1")
        .bind(e[4])
        .execute(&pool)
        .await
        .unwrap();
    embed(&pool, archived[0], "other", DIMS).await; // an archived group's: eviction's business
    let gone = e[5];
    embed(&pool, gone, "hash-v1", DIMS).await;
    sqlx::query("DELETE FROM public.entries WHERE id = $1")
        .bind(gone)
        .execute(&pool)
        .await
        .unwrap(); // no foreign key from embeddings to the partitioned entries: orphaned
                   // e[3] has none: missing. archived[1] has none either, and is not missing.

    let found = run_sync(&pool, true).await;
    let d = &found.scan.drift;
    assert_eq!(d.missing.sample, vec![e[3]]);
    assert_eq!(d.model_mismatch.sample, sorted(vec![e[1], e[2]]));
    assert_eq!(d.orphaned.sample, sorted(vec![e[4], gone]));
    assert_eq!(
        d.stale.count, 0,
        "no hash recorded for Memory Service's own embedding"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM public.entry_embeddings").await,
        6,
        "a dry run changes nothing"
    );

    let repaired = run_sync(&pool, false).await;
    let repair = repaired.repair.clone().unwrap();
    assert_eq!(
        (repair.reembedded, repair.orphans_removed, repair.failed),
        (3, 2, 0)
    );
    assert_eq!(repair.adopted, 1, "e[0], written by Memory Service");
    assert_eq!(repaired.remaining.total(), 0, "{:?}", repaired.remaining);
    let rows = embeddings(&pool).await;
    let by_id = |id: Uuid| rows.iter().find(|r| r.0 == id).cloned();
    for id in [e[1], e[2], e[3]] {
        assert_eq!(
            by_id(id),
            Some((id, "hash-v1".to_string(), true)),
            "re-embedded"
        );
    }
    assert_eq!(
        by_id(e[0]).map(|r| r.2),
        Some(false),
        "adopted as it was, not rewritten"
    );
    assert_eq!(by_id(e[4]), None);
    assert_eq!(by_id(gone), None);
    assert_eq!(
        by_id(archived[0]).map(|r| r.1),
        Some("other".to_string()),
        "left to eviction"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM memwarden.memory_service_embedding_hashes"
        )
        .await,
        4
    );

    let second = run_sync(&pool, true).await;
    assert_eq!(second.scan.drift.total(), 0, "{:?}", second.scan.drift);

    // Content changed under an embedding memwarden has a hash for: stale.
    sqlx::query("UPDATE public.entries SET indexed_content = 'rewritten' WHERE id = ANY($1)")
        .bind(vec![e[0], e[3]])
        .execute(&pool)
        .await
        .unwrap();
    let stale = run_sync(&pool, true).await;
    assert_eq!(stale.scan.drift.stale.sample, sorted(vec![e[0], e[3]]));
    let fixed = run_sync(&pool, false).await;
    assert_eq!(fixed.remaining.total(), 0);
    assert_eq!(by_id_fresh(&pool, e[0]).await, Some(true));
}

async fn by_id_fresh(pool: &PgPool, id: Uuid) -> Option<bool> {
    embeddings(pool)
        .await
        .into_iter()
        .find(|r| r.0 == id)
        .map(|r| r.2)
}

#[tokio::test]
async fn reembed_rewrites_what_needs_it_or_everything_with_force() {
    let Some((_db, pool)) = memory_service_db().await else {
        return;
    };
    let (_, _, e) = group(&pool, None, 2).await;
    embed(&pool, e[0], "old-model", DIMS).await;
    let run = |force: bool| {
        let pool = pool.clone();
        async move {
            reembed(
                corpus(&pool),
                Arc::new(HashEmbedder::new(DIMS)),
                &ReembedArgs {
                    batch_size: 3,
                    limit: None,
                    force,
                },
                &BulkSettings::default(),
                &NoCheckpoint,
                &CancellationToken::new(),
                &NoProgress,
            )
            .await
            .unwrap()
        }
    };
    let first = run(false).await;
    assert_eq!((first.processed, first.total, first.failed), (4, 4, 0));
    let rows = embeddings(&pool).await;
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter()
            .all(|(_, model, fresh)| model == "hash-v1" && *fresh),
        "{rows:?}"
    );
    let none_left = run(false).await;
    assert_eq!(none_left.total, 0, "nothing needs it now");
    let forced = run(true).await;
    assert_eq!(forced.processed, 4);
    let metadata: i64 = count(
        &pool,
        "SELECT count(*) FROM public.entries WHERE indexed_at IS NOT NULL",
    )
    .await;
    assert_eq!(metadata, 0, "entries are never written");
}
