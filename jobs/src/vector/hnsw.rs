//! Neighbour search in pgvector's HNSW index (the pgvector backend; see `backend`): the
//! owner's live memories of the same model and size, nearest by cosine distance, found in the
//! index of that size and filtered as the scan goes. The owner filter needs an iterative scan
//! (pgvector 0.8) to fill `k` when the owner is a small part of the index; the session turns
//! it on ([`SESSION_SETTINGS`](super::SESSION_SETTINGS)).

use sqlx::PgPool;
use uuid::Uuid;

use super::backend::IndexedAs;
use super::{top_k, Neighbour, NeighbourQuery};

/// The statement for one size. Its ORDER BY is the index's expression, and `dims` is a
/// literal, so the planner can match the partial index (`WHERE dims = n`). Sent unnamed and
/// planned per call, so that a small owner is read through `memories`' owner index and sorted
/// exactly, and a large one through the HNSW index.
fn statement(dims: usize) -> String {
    let distance = match IndexedAs::for_dims(dims) {
        Some(t) => format!("e.embedding::{c} <=> $1::real[]::{c}", c = t.cast(dims)),
        None => "e.embedding <=> $1::real[]::vector".to_string(),
    };
    format!(
        "SELECT m.id, (1 - ({distance}))::real FROM memory_embeddings e \
         JOIN memories m ON m.id = e.memory_id \
         WHERE e.dims = {dims} AND e.model = $2 AND m.owner_id = $3 AND m.deleted_at IS NULL \
           AND m.id IS DISTINCT FROM $4 \
         ORDER BY {distance} LIMIT $5"
    )
}

pub(super) async fn nearest(
    pool: &PgPool,
    q: &NeighbourQuery<'_>,
) -> Result<Vec<Neighbour>, sqlx::Error> {
    let rows: Vec<(Uuid, f32)> = sqlx::query_as(&statement(q.vector.len()))
        .bind(q.vector)
        .bind(q.model)
        .bind(q.owner_id)
        .bind(q.exclude)
        .bind(q.k as i64)
        .persistent(false)
        .fetch_all(pool)
        .await?;
    // An iterative scan in relaxed order may return neighbours slightly out of order.
    Ok(top_k(rows.into_iter(), q.threshold, q.k))
}
