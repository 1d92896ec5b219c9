//! The HNSW indexes of the pgvector backend: one partial index per stored size, as `vector`
//! up to 2,000 dimensions and as `halfvec` up to 4,000, built without blocking writers.

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool};

use super::{db, BackendError, PREPARE_LOCK};

/// The largest size HNSW indexes as `vector`, and as `halfvec` (pgvector 0.7 and later).
pub const HNSW_MAX_VECTOR_DIMS: usize = 2000;
pub const HNSW_MAX_HALFVEC_DIMS: usize = 4000;

/// The type a size is indexed as, or none above [`HNSW_MAX_HALFVEC_DIMS`] (searched exactly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexedAs {
    Vector,
    Halfvec,
}

impl IndexedAs {
    pub fn for_dims(dims: usize) -> Option<IndexedAs> {
        match dims {
            1..=HNSW_MAX_VECTOR_DIMS => Some(IndexedAs::Vector),
            n if n <= HNSW_MAX_HALFVEC_DIMS && n > 0 => Some(IndexedAs::Halfvec),
            _ => None,
        }
    }

    /// pgvector's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            IndexedAs::Vector => "vector",
            IndexedAs::Halfvec => "halfvec",
        }
    }

    /// The expression the index is on, and the search orders by (they must match).
    pub(crate) fn cast(self, dims: usize) -> String {
        format!("{}({dims})", self.name())
    }

    fn opclass(self) -> &'static str {
        match self {
            IndexedAs::Vector => "vector_cosine_ops",
            IndexedAs::Halfvec => "halfvec_cosine_ops",
        }
    }
}

/// The HNSW index of one size.
pub fn index_name(dims: usize) -> String {
    format!("memory_embeddings_hnsw_{dims}")
}

/// One size's index as found after [`prepare`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizeIndex {
    pub dims: usize,
    /// None: above what HNSW indexes, so this size is searched exactly.
    pub indexed_as: Option<IndexedAs>,
    pub name: Option<String>,
}

/// How indexes are built.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexBuild {
    /// `maintenance_work_mem` for the build, in MiB (none: the server's). An HNSW build is
    /// several times faster when its graph fits.
    pub memory_mb: Option<u32>,
}

/// Builds the HNSW index of one size if it is missing (or left invalid by a build that died),
/// without blocking writers (`CONCURRENTLY`). A size above what HNSW indexes gets none.
pub async fn ensure_index(
    pool: &PgPool,
    dims: usize,
    build: &IndexBuild,
) -> Result<SizeIndex, BackendError> {
    let Some(indexed_as) = IndexedAs::for_dims(dims) else {
        tracing::warn!(
            dims,
            "no HNSW index above {HNSW_MAX_HALFVEC_DIMS} dimensions: this size is searched exactly"
        );
        return Ok(SizeIndex {
            dims,
            indexed_as: None,
            name: None,
        });
    };
    let name = index_name(dims);
    // A connection of its own, closed afterwards, so the session lock and settings go with it.
    let mut conn = pool.acquire().await.map_err(db("connecting"))?.detach();
    let result = build_index(&mut conn, dims, indexed_as, &name, build).await;
    let _ = conn.close().await;
    result?;
    Ok(SizeIndex {
        dims,
        indexed_as: Some(indexed_as),
        name: Some(name),
    })
}

async fn build_index(
    conn: &mut PgConnection,
    dims: usize,
    indexed_as: IndexedAs,
    name: &str,
    build: &IndexBuild,
) -> Result<(), BackendError> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(PREPARE_LOCK + 1 + dims as i64)
        .execute(&mut *conn)
        .await
        .map_err(db("waiting for another replica's index build"))?;
    let valid: Option<bool> = sqlx::query_scalar(
        "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("reading an HNSW index"))?;
    match valid {
        Some(true) => return Ok(()),
        Some(false) => {
            sqlx::query(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"))
                .execute(&mut *conn)
                .await
                .map_err(db("dropping an invalid HNSW index"))?;
        }
        None => {}
    }
    // A build takes as long as it takes; a database-wide statement_timeout must not end it.
    sqlx::query("SET statement_timeout = 0")
        .execute(&mut *conn)
        .await
        .map_err(db("clearing statement_timeout"))?;
    if let Some(mb) = build.memory_mb {
        sqlx::query(&format!("SET maintenance_work_mem = '{mb}MB'"))
            .execute(&mut *conn)
            .await
            .map_err(db("setting maintenance_work_mem"))?;
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM memory_embeddings WHERE dims = $1")
        .bind(dims as i32)
        .fetch_one(&mut *conn)
        .await
        .map_err(db("counting a size's embeddings"))?;
    tracing::info!(
        dims,
        rows,
        index = name,
        "building an HNSW index (once per size)"
    );
    let started = std::time::Instant::now();
    sqlx::query(&format!(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON memory_embeddings \
         USING hnsw ((embedding::{cast}) {opclass}) WHERE dims = {dims}",
        cast = indexed_as.cast(dims),
        opclass = indexed_as.opclass(),
    ))
    .execute(&mut *conn)
    .await
    .map_err(db("building an HNSW index"))?;
    tracing::info!(
        dims,
        rows,
        index = name,
        seconds = started.elapsed().as_secs_f64(),
        "HNSW index built"
    );
    Ok(())
}
