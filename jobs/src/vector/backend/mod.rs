//! How the store keeps its vectors, and the one place that changes it.
//!
//! - **pgvector**: `memory_embeddings.embedding` is pgvector's `vector` (no fixed size, since
//!   sizes coexist while a model changes), with one partial HNSW cosine index per size
//!   (`WHERE dims = n`, over `embedding::vector(n)`, or `embedding::halfvec(n)` from 2,001 to
//!   4,000 dimensions, which is as far as HNSW indexes go). Neighbours are found in the index.
//! - **array**: `embedding` is `real[]` and neighbours are found by an exact scan of the
//!   owner's vectors computed here: the fallback on a server without pgvector.
//!
//! The column's type is the truth: every replica reads it, so each searches the way the data
//! is kept, whatever it was configured with. [`prepare`] (at start, under an advisory lock)
//! installs the extension, converts the column either way, and builds the indexes.

use std::fmt;

mod indexes;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool};

pub use indexes::{
    ensure_index, index_name, IndexBuild, IndexedAs, SizeIndex, HNSW_MAX_HALFVEC_DIMS,
    HNSW_MAX_VECTOR_DIMS,
};

/// What `vector.backend` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// pgvector when the server has it (installing it if memwarden may), else arrays.
    #[default]
    Auto,
    Pgvector,
    Array,
}

impl BackendChoice {
    /// The backend this choice insists on; none for `auto`, which takes what the server has.
    pub fn required(self) -> Option<Backend> {
        match self {
            BackendChoice::Auto => None,
            BackendChoice::Pgvector => Some(Backend::Pgvector),
            BackendChoice::Array => Some(Backend::Array),
        }
    }
}

/// How vectors are kept and searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Pgvector,
    Array,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Pgvector => "pgvector",
            Backend::Array => "array",
        })
    }
}

/// The oldest pgvector used: the first with `halfvec` (0.7.0, 2024-04).
const MIN_PGVECTOR: (u32, u32) = (0, 7);

/// What [`prepare`] settled on, and why: for the status and the logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prepared {
    pub backend: Backend,
    pub reason: String,
    /// The installed pgvector's version, if any.
    pub pgvector_version: Option<String>,
    pub indexes: Vec<SizeIndex>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// `vector.backend = "pgvector"` on a server that cannot give it.
    #[error("vector.backend = \"pgvector\", but {0}")]
    Unavailable(String),
    #[error("preparing the vector backend: {context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> BackendError {
    move |source| BackendError::Database { context, source }
}

/// Serialises [`prepare`] across replicas; each size's index build has its own lock above it.
const PREPARE_LOCK: i64 = 0x6d65_6d77_7665_6300; // "memwvec\0"

/// What the server has.
#[derive(Debug, sqlx::FromRow)]
struct Server {
    installed: Option<String>,
    installed_in: Option<String>,
    available: Option<String>,
    column_type: String,
    on_search_path: bool,
}

async fn inspect(conn: &mut PgConnection) -> Result<Server, sqlx::Error> {
    sqlx::query_as(
        "SELECT e.extversion AS installed, n.nspname::text AS installed_in, \
                (SELECT default_version FROM pg_available_extensions WHERE name = 'vector') AS available, \
                (SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
                 WHERE attrelid = 'memory_embeddings'::regclass AND attname = 'embedding') AS column_type, \
                COALESCE(n.nspname = ANY(current_schemas(false)), false) AS on_search_path \
         FROM (SELECT 1) one \
         LEFT JOIN pg_extension e ON e.extname = 'vector' \
         LEFT JOIN pg_namespace n ON n.oid = e.extnamespace",
    )
    .fetch_one(conn)
    .await
}

/// Whether a pgvector version string is at least [`MIN_PGVECTOR`].
fn recent_enough(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= MIN_PGVECTOR
}

/// Why pgvector cannot be used on this server, or None when it can (after installing it).
async fn pgvector_unusable(conn: &mut PgConnection) -> Result<Option<String>, BackendError> {
    let mut server = inspect(conn)
        .await
        .map_err(db("reading the server's extensions"))?;
    if server.installed.is_none() {
        let Some(available) = server.available.clone() else {
            return Ok(Some(
                "this PostgreSQL server has no pgvector extension (pg_available_extensions has \
                 no `vector`); install pgvector, or set vector.backend = \"array\""
                    .into(),
            ));
        };
        // The type lands in public, where pgvector is usually installed and where other
        // applications of the database (the memory service) look for it. In a savepoint, so
        // a refusal leaves the caller's transaction usable.
        let mut savepoint = conn.begin().await.map_err(db("a savepoint"))?;
        let created = sqlx::query("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public")
            .execute(&mut *savepoint)
            .await;
        match created {
            Ok(_) => savepoint
                .commit()
                .await
                .map_err(db("installing pgvector"))?,
            Err(e) => {
                savepoint.rollback().await.map_err(db("a savepoint"))?;
                return Ok(Some(format!(
                    "pgvector {available} is available but memwarden could not install it ({e}); \
                     have a superuser run CREATE EXTENSION vector"
                )));
            }
        }
        server = inspect(conn)
            .await
            .map_err(db("reading the server's extensions"))?;
    }
    let version = server.installed.unwrap_or_default();
    if !recent_enough(&version) {
        return Ok(Some(format!(
            "pgvector {version} is older than {}.{}.0, the first with halfvec; run ALTER \
             EXTENSION vector UPDATE",
            MIN_PGVECTOR.0, MIN_PGVECTOR.1
        )));
    }
    if !server.on_search_path {
        return Ok(Some(format!(
            "pgvector is installed in schema {}, which memwarden's sessions do not search \
             (they search memwarden's schema, then public)",
            server.installed_in.unwrap_or_default()
        )));
    }
    Ok(None)
}

/// Settles the backend (see the module docs) and makes the store match it: installs pgvector
/// if it is wanted and allowed, converts `embedding` to `vector` or back to `real[]`, and
/// builds an HNSW index for each size stored and for `dims` (the configured embedder's size,
/// when known). Idempotent; replicas starting together wait for each other.
pub async fn prepare(
    pool: &PgPool,
    choice: BackendChoice,
    dims: Option<usize>,
    build: &IndexBuild,
) -> Result<Prepared, BackendError> {
    let mut conn = pool.acquire().await.map_err(db("connecting"))?;
    let mut tx = conn.begin().await.map_err(db("beginning"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PREPARE_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(db("waiting for another replica's preparation"))?;
    let (backend, reason) = match choice {
        BackendChoice::Array => (Backend::Array, "vector.backend = \"array\"".to_string()),
        BackendChoice::Pgvector => match pgvector_unusable(&mut tx).await? {
            Some(why) => return Err(BackendError::Unavailable(why)),
            None => (
                Backend::Pgvector,
                "vector.backend = \"pgvector\"".to_string(),
            ),
        },
        BackendChoice::Auto => match dims.filter(|d| IndexedAs::for_dims(*d).is_none()) {
            Some(d) => (
                Backend::Array,
                format!("auto: {d} dimensions are above the {HNSW_MAX_HALFVEC_DIMS} HNSW indexes"),
            ),
            None => match pgvector_unusable(&mut tx).await? {
                Some(why) => (Backend::Array, format!("auto: {why}")),
                None => (
                    Backend::Pgvector,
                    "auto: the server has pgvector".to_string(),
                ),
            },
        },
    };
    let server = inspect(&mut tx).await.map_err(db("reading the column"))?;
    let is_vector = server.column_type == "vector";
    match backend {
        Backend::Pgvector if !is_vector => {
            tracing::warn!("converting memory_embeddings.embedding to pgvector's vector (rewrites the table once)");
            convert(&mut tx, "vector", "vector_dims(embedding)").await?;
        }
        Backend::Array if is_vector => {
            tracing::warn!(
                "converting memory_embeddings.embedding back to real[] (rewrites the table once)"
            );
            for name in hnsw_indexes(&mut tx).await? {
                sqlx::query(&format!("DROP INDEX IF EXISTS {name}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("dropping an HNSW index"))?;
            }
            convert(&mut tx, "real[]", "cardinality(embedding)").await?;
        }
        _ => {}
    }
    tx.commit().await.map_err(db("committing the conversion"))?;
    let pgvector_version = inspect(&mut conn)
        .await
        .map_err(db("reading the server's extensions"))?
        .installed;

    let mut indexes = Vec::new();
    if backend == Backend::Pgvector {
        let mut sizes: Vec<i32> =
            sqlx::query_scalar("SELECT DISTINCT dims FROM memory_embeddings ORDER BY 1")
                .fetch_all(&mut *conn)
                .await
                .map_err(db("listing the stored sizes"))?;
        sizes.extend(dims.map(|d| d as i32));
        sizes.sort_unstable();
        sizes.dedup();
        drop(conn);
        for size in sizes {
            indexes.push(ensure_index(pool, size as usize, build).await?);
        }
    }
    Ok(Prepared {
        backend,
        reason,
        pgvector_version,
        indexes,
    })
}

/// `ALTER COLUMN embedding TYPE`, with the size check rewritten for the new type.
async fn convert(conn: &mut PgConnection, to: &str, size_of: &str) -> Result<(), BackendError> {
    for statement in [
        // memory_embeddings_check is the name PostgreSQL gave the first layout's check.
        "ALTER TABLE memory_embeddings DROP CONSTRAINT IF EXISTS memory_embeddings_check, \
         DROP CONSTRAINT IF EXISTS memory_embeddings_size"
            .to_string(),
        format!("ALTER TABLE memory_embeddings ALTER COLUMN embedding TYPE {to} USING embedding::{to}"),
        format!("ALTER TABLE memory_embeddings ADD CONSTRAINT memory_embeddings_size CHECK ({size_of} = dims)"),
    ] {
        sqlx::query(&statement)
            .execute(&mut *conn)
            .await
            .map_err(db("converting memory_embeddings.embedding"))?;
    }
    Ok(())
}

async fn hnsw_indexes(conn: &mut PgConnection) -> Result<Vec<String>, BackendError> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = 'memory_embeddings'::regclass AND c.relname LIKE 'memory\\_embeddings\\_hnsw\\_%'",
    )
    .fetch_all(conn)
    .await
    .map_err(db("listing the HNSW indexes"))
}

/// The backend as the store has it, changing nothing: for a daemon whose migrations are run
/// by `memwarden migrate`.
pub async fn describe(pool: &PgPool) -> Result<Prepared, BackendError> {
    let mut conn = pool.acquire().await.map_err(db("connecting"))?;
    let server = inspect(&mut conn)
        .await
        .map_err(db("reading the server's extensions"))?;
    let backend = if server.column_type == "vector" {
        Backend::Pgvector
    } else {
        Backend::Array
    };
    let mut indexes = Vec::new();
    if backend == Backend::Pgvector {
        for name in hnsw_indexes(&mut conn).await? {
            let dims = name
                .rsplit('_')
                .next()
                .and_then(|d| d.parse::<usize>().ok())
                .unwrap_or(0);
            indexes.push(SizeIndex {
                dims,
                indexed_as: IndexedAs::for_dims(dims),
                name: Some(name),
            });
        }
    }
    Ok(Prepared {
        backend,
        reason: format!("memory_embeddings.embedding is {}", server.column_type),
        pgvector_version: server.installed,
        indexes,
    })
}

/// The backend the stored data is kept in: the column's type.
pub async fn current(pool: &PgPool) -> Result<Backend, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let server = inspect(&mut conn).await?;
    Ok(if server.column_type == "vector" {
        Backend::Pgvector
    } else {
        Backend::Array
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_index_as_vector_then_halfvec_then_not_at_all() {
        assert_eq!(IndexedAs::for_dims(384), Some(IndexedAs::Vector));
        assert_eq!(IndexedAs::for_dims(2000), Some(IndexedAs::Vector));
        assert_eq!(IndexedAs::for_dims(2001), Some(IndexedAs::Halfvec));
        assert_eq!(IndexedAs::for_dims(3072), Some(IndexedAs::Halfvec));
        assert_eq!(IndexedAs::for_dims(4001), None);
        assert_eq!(IndexedAs::for_dims(0), None);
    }

    #[test]
    fn versions_from_0_7_are_recent_enough() {
        assert!(recent_enough("0.8.2"));
        assert!(recent_enough("0.7.0"));
        assert!(recent_enough("1.0"));
        assert!(!recent_enough("0.6.2"));
        assert!(!recent_enough("junk"));
    }
}
