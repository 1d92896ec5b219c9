//! The vector index over `memory_embeddings`, and its cache.

use memwarden_jobs::vector::{EmbeddingRecord, NeighbourQuery, DEFAULT_CACHE_BYTES};
use memwarden_jobs::{PgVectorIndex, VectorIndex};
use uuid::Uuid;

use crate::common::TestDb;
use crate::support::*;

#[tokio::test]
async fn vector_index_round_trip() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let index = PgVectorIndex::new(pool.clone());
    let id = insert(&pool, "alice", "Context", "x", hours(0)).await;
    assert!(index.get(id).await.unwrap().is_none());
    let record = EmbeddingRecord {
        memory_id: id,
        model: "m".into(),
        content_hash: "h".into(),
        vector: vec![0.6, 0.8],
    };
    index.upsert(std::slice::from_ref(&record)).await.unwrap();
    let stored = index.get(id).await.unwrap().unwrap();
    assert_eq!(
        (stored.model.as_str(), stored.dims, stored.vector.as_slice()),
        ("m", 2, &[0.6f32, 0.8][..])
    );
    assert!(stored.is_fresh("h", "m", 2));
    // Replaced whole, including a size change.
    index
        .upsert(&[EmbeddingRecord {
            vector: vec![1.0, 0.0, 0.0],
            content_hash: "h2".into(),
            ..record
        }])
        .await
        .unwrap();
    let stored = index.get(id).await.unwrap().unwrap();
    assert_eq!((stored.dims, stored.content_hash.as_str()), (3, "h2"));
    assert!(index.delete(id).await.unwrap());
    assert!(!index.delete(id).await.unwrap());
}

#[tokio::test]
async fn cached_index_never_uses_a_rewritten_vector() {
    let db = TestDb::migrated();
    let pool = db.pool().await;
    let cached = PgVectorIndex::with_cache(pool.clone(), DEFAULT_CACHE_BYTES);
    let other_replica = PgVectorIndex::new(pool.clone());
    let a = insert(&pool, "alice", "Context", "a", hours(2)).await;
    let b = insert(&pool, "alice", "Context", "b", hours(1)).await;
    let record = |id: Uuid, vector: Vec<f32>| EmbeddingRecord {
        memory_id: id,
        model: "m".into(),
        content_hash: "h".into(),
        vector,
    };
    let query = NeighbourQuery {
        owner_id: "alice",
        model: "m",
        vector: &[1.0, 0.0],
        exclude: None,
        threshold: 0.5,
        k: 5,
    };
    let ids = |hits: Vec<memwarden_jobs::vector::Neighbour>| -> Vec<Uuid> {
        hits.iter().map(|n| n.memory_id).collect()
    };
    cached.upsert(&[record(a, vec![1.0, 0.0])]).await.unwrap();
    other_replica
        .upsert(&[record(b, vec![1.0, 0.1])])
        .await
        .unwrap();
    assert_eq!(ids(cached.nearest(&query).await.unwrap()), vec![a, b]);

    // Another replica rewrites both; the cache must notice.
    other_replica
        .upsert(&[record(a, vec![0.0, 1.0]), record(b, vec![1.0, 0.0])])
        .await
        .unwrap();
    assert_eq!(ids(cached.nearest(&query).await.unwrap()), vec![b]);
    // A soft-deleted memory is not a neighbour, cached or not.
    sqlx::query("UPDATE memories SET deleted_at = now() WHERE id = $1")
        .bind(b)
        .execute(&pool)
        .await
        .unwrap();
    assert!(cached.nearest(&query).await.unwrap().is_empty());
}
