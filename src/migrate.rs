//! The schema's migrations: everything memwarden owns lives in one schema of its own
//! (`database.schema`, default `memwarden`), created here, and nothing of memwarden's in
//! `public`. The migrations in `migrations/` are written without a schema and run with that
//! schema first on the search path, so their objects (and sqlx's `_sqlx_migrations`) land in
//! it.
//!
//! Installs made before 2026-12-02 kept the memory store in `public` and recorded their
//! migrations in `public._sqlx_migrations` (those migrations are kept byte for byte in
//! `tests/fixtures/migrations-before-2026-12-02/`, for the upgrade test). Such an install is moved once, in one transaction, before the migrator runs: its tables
//! and functions go into the schema with every row, trigger, index and queued job, and the
//! migrations they already amount to are recorded as applied.

use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool};

use crate::config::Schema;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The first migrations of the current layout, which an install from before the move has
/// the equivalent of once its tables are moved.
const LEGACY_EQUIVALENT: i64 = 4;
/// The last migration of the old layout; an old install must have reached it.
const LEGACY_LAST: i64 = 7;

/// Serialises the move across replicas that start at once.
const UPGRADE_LOCK: i64 = 0x6d65_6d77_6d6f_7665; // "memwmove"

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("creating schema {schema}: {source}")]
    Schema { schema: Schema, source: sqlx::Error },
    #[error("moving the install from before 2026-12-02 into schema {schema}: {source}")]
    Upgrade { schema: Schema, source: sqlx::Error },
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Creates the schema, moves an install of the old layout into it, and applies what is new.
/// The pool's sessions must have the schema first on their search path (`db::pool`).
pub async fn migrate(pool: &PgPool, schema: &Schema) -> Result<(), MigrateError> {
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(pool)
        .await
        .map_err(|source| MigrateError::Schema {
            schema: schema.clone(),
            source,
        })?;
    let mut conn = pool
        .acquire()
        .await
        .map_err(|source| MigrateError::Upgrade {
            schema: schema.clone(),
            source,
        })?;
    move_legacy_install(&mut conn, schema).await?;
    drop(conn);
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Tables of the old layout that lived in `public`, in an order foreign keys allow.
const LEGACY_TABLES: [&str; 9] = [
    "memories",
    "memory_embeddings",
    "memory_entities",
    "memory_edges",
    "patterns",
    "conversations",
    "conversation_entries",
    "blobs",
    "attachments",
];

const LEGACY_FUNCTIONS: [&str; 3] = [
    "memories_content_hash()",
    "memories_enqueue_enrichment()",
    "memories_drop_inbound_edges()",
];

/// Whether `public` holds an install of the old layout: its migration records, and the
/// memory store with memwarden's own trigger on it (another application's `memories` has none).
async fn is_legacy(conn: &mut PgConnection) -> Result<Option<i64>, sqlx::Error> {
    // Checked apart: a query naming a table that does not exist fails to plan.
    let has_records: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
    if !has_records {
        return Ok(None);
    }
    sqlx::query_scalar(
        "SELECT (SELECT max(version) FROM public._sqlx_migrations WHERE success) \
         WHERE EXISTS (SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
                       JOIN pg_namespace n ON n.oid = c.relnamespace \
                       WHERE n.nspname = 'public' AND c.relname = 'memories' \
                         AND t.tgname = 'memories_enqueue_enrichment_insert')",
    )
    .fetch_optional(&mut *conn)
    .await
    .map(Option::flatten)
}

async fn move_legacy_install(conn: &mut PgConnection, schema: &Schema) -> Result<(), MigrateError> {
    let err = |source| MigrateError::Upgrade {
        schema: schema.clone(),
        source,
    };
    let mut tx = conn.begin().await.map_err(err)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(UPGRADE_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    let Some(version) = is_legacy(&mut tx).await.map_err(err)? else {
        return Ok(());
    };
    if version < LEGACY_LAST {
        return Err(MigrateError::Refused(format!(
            "this database holds a memwarden install at migration {version} of the old layout \
             (public); it can be moved only from migration {LEGACY_LAST}: run a memwarden built \
             before 2026-12-02 against it once, then this one"
        )));
    }
    if schema.as_str() != "memwarden" {
        return Err(MigrateError::Refused(format!(
            "this database holds a memwarden install of the old layout, whose queue is in \
             schema memwarden: it moves into memwarden, not into {schema} (unset database.schema \
             for the move)"
        )));
    }
    tracing::warn!(%schema, "moving the memory store of an install from before 2026-12-02 out of public");
    let mut statements: Vec<String> = Vec::new();
    for table in LEGACY_TABLES {
        statements.push(format!("ALTER TABLE public.{table} SET SCHEMA {schema}"));
    }
    for function in LEGACY_FUNCTIONS {
        statements.push(format!(
            "ALTER FUNCTION public.{function} SET SCHEMA {schema}"
        ));
    }
    // The functions resolve names as the current layout's do, whoever writes.
    for function in LEGACY_FUNCTIONS
        .iter()
        .chain(&["enqueue(text, jsonb, text, smallint, timestamptz, integer, text)"])
    {
        statements.push(format!(
            "ALTER FUNCTION {schema}.{function} SET search_path = {schema}, public"
        ));
    }
    // The one function whose body named its table with `public.`.
    statements.push(
        "CREATE OR REPLACE FUNCTION memories_drop_inbound_edges() RETURNS trigger \
         LANGUAGE plpgsql SET search_path FROM CURRENT AS $$ \
         BEGIN \
             DELETE FROM memory_edges e USING gone g \
             WHERE e.dst_id = g.id AND e.kind IN ('PRECEDED_BY', 'SIMILAR_TO'); \
             RETURN NULL; \
         END $$"
            .into(),
    );
    statements.push(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, \
         description TEXT NOT NULL, installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), \
         success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)"
            .into(),
    );
    for statement in &statements {
        sqlx::query(statement)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
    }
    for m in MIGRATOR.iter().filter(|m| m.version <= LEGACY_EQUIVALENT) {
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ($1, $2, true, $3, 0)",
        )
        .bind(m.version)
        .bind(m.description.as_ref())
        .bind(m.checksum.as_ref())
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    }
    // The old records go; their table too, unless someone else keeps records in it.
    sqlx::query("DELETE FROM public._sqlx_migrations WHERE version <= $1")
        .bind(LEGACY_LAST)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    sqlx::query(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM public._sqlx_migrations) THEN \
         DROP TABLE public._sqlx_migrations; END IF; END $$",
    )
    .execute(&mut *tx)
    .await
    .map_err(err)?;
    tx.commit().await.map_err(err)?;
    tracing::warn!(%schema, "the install from before 2026-12-02 is moved; nothing of memwarden's is left in public");
    Ok(())
}
