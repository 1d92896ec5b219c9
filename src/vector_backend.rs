//! The vector backend at start: settled with the migrations (pgvector installed, the column
//! converted, the HNSW indexes built; `memwarden_jobs::vector::backend`), or only read when
//! migrations are someone else's job, then reported by `/v1/status` and a metric.

use anyhow::Context;
use memwarden_jobs::vector::backend::{self, IndexBuild, Prepared};
use sqlx::PgPool;

use crate::config::Settings;

/// Settles the backend and makes the store match it (`database.migrate`), or reads what the
/// store has (refusing to start when it is not what `vector.backend` demands).
pub async fn prepare(pool: &PgPool, settings: &Settings) -> anyhow::Result<Prepared> {
    let prepared = if settings.database.migrate {
        settle(pool, settings).await?
    } else {
        let found = backend::describe(pool).await?;
        let wanted = settings.vector.backend.required();
        if let Some(wanted) = wanted.filter(|w| *w != found.backend) {
            anyhow::bail!(
                "vector.backend = \"{wanted}\", but the store keeps its vectors as {} ({}); with \
                 database.migrate = false, run `memwarden migrate` to convert it",
                found.backend,
                found.reason
            );
        }
        found
    };
    tracing::info!(
        backend = %prepared.backend,
        reason = %prepared.reason,
        pgvector = prepared.pgvector_version.as_deref().unwrap_or("none"),
        "vector backend"
    );
    crate::telemetry::metrics::publish_vector_backend(prepared.backend);
    Ok(prepared)
}

/// Installs, converts and indexes as `vector.backend` asks (`backend::prepare`).
pub async fn settle(pool: &PgPool, settings: &Settings) -> anyhow::Result<Prepared> {
    let build = IndexBuild {
        memory_mb: settings.vector.index_build_memory_mb.map(|m| m.get()),
    };
    let prepared = backend::prepare(
        pool,
        settings.vector.backend,
        settings.embedding.expected_dims(),
        &build,
    )
    .await
    .context("preparing the vector backend")?;
    Ok(prepared)
}
