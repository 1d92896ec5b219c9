//! What memwarden checks before it works on a Memory Service database: a core schema version
//! it knows (`schema_metadata`), the tables it reads and writes, and its rights on them. Every
//! missing table or right is named at once, so one start tells the operator all there is to
//! grant.

use sqlx::PgPool;

use super::MemoryServiceStore;

/// The `core_schema_version` values whose tables memwarden's statements were written against.
pub const KNOWN_CORE_VERSIONS: &[&str] = &["1"];

/// The tables memwarden needs, and the rights it needs on each. Rows that go by cascade
/// (conversations, entries, memberships, ancestry, embeddings of a group) need no right of
/// ours: PostgreSQL runs foreign-key actions as the owner of the referencing table.
const NEEDED: &[(&str, &[&str])] = &[
    ("conversation_groups", &["SELECT", "DELETE"]),
    ("conversations", &["SELECT"]),
    ("conversation_memberships", &["SELECT"]),
    ("entries", &["SELECT"]),
    ("attachments", &["SELECT", "DELETE"]),
    ("tasks", &["INSERT"]),
    ("outbox_events", &["INSERT"]),
];

/// Needed only for re-embedding and drift repair (Memory Service's pgvector tables).
const EMBEDDINGS: (&str, &[&str]) = (
    "entry_embeddings",
    &["SELECT", "INSERT", "UPDATE", "DELETE"],
);

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaCheck {
    pub core_schema_version: String,
    /// Whether `entry_embeddings` is there (Memory Service with pgvector), with our rights.
    pub embeddings: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaCheckError {
    #[error(
        "store.kind = \"memory-service\", but `{schema}.schema_metadata` does not exist: \
         `store.schema` must name the schema of Memory Service's tables"
    )]
    NoSchema { schema: String },
    #[error(
        "the Memory Service database has no `core_schema_version` in `{schema}.schema_metadata`"
    )]
    NoVersion { schema: String },
    #[error(
        "the Memory Service core schema version is `{found}`, which memwarden does not know \
         (it knows {}); memwarden refuses to work on tables it was not written for",
        KNOWN_CORE_VERSIONS.join(", ")
    )]
    UnknownVersion { found: String },
    #[error("the Memory Service database is missing what memwarden needs: {}", .0.join("; "))]
    Missing(Vec<String>),
    #[error("checking the Memory Service schema: {0}")]
    Database(#[from] sqlx::Error),
}

/// Checks the store; `Err` says what is wrong, in words an operator can act on.
pub async fn check(
    pool: &PgPool,
    store: &MemoryServiceStore,
) -> Result<SchemaCheck, SchemaCheckError> {
    let schema = store.schema.as_str();
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{schema}.schema_metadata"))
        .fetch_one(pool)
        .await?;
    if !exists {
        return Err(SchemaCheckError::NoSchema {
            schema: schema.into(),
        });
    }
    let version: Option<String> = sqlx::query_scalar(&format!(
        "SELECT value FROM {schema}.schema_metadata WHERE key = 'core_schema_version'"
    ))
    .fetch_optional(pool)
    .await?;
    let version = version.ok_or_else(|| SchemaCheckError::NoVersion {
        schema: schema.into(),
    })?;
    if !KNOWN_CORE_VERSIONS.contains(&version.trim()) {
        return Err(SchemaCheckError::UnknownVersion { found: version });
    }
    let mut missing = Vec::new();
    for (table, rights) in NEEDED {
        missing.extend(lacking(pool, schema, table, rights).await?);
    }
    // A BIGSERIAL insert draws from the sequence: USAGE on it is a right of its own.
    let sequence_usable: Option<bool> = sqlx::query_scalar(
        "SELECT has_sequence_privilege(pg_get_serial_sequence($1, 'tx_seq'), 'USAGE')",
    )
    .bind(format!("{schema}.outbox_events"))
    .fetch_one(pool)
    .await
    .ok()
    .flatten();
    if sequence_usable == Some(false) {
        missing.push(format!(
            "USAGE on the sequence of {schema}.outbox_events.tx_seq"
        ));
    }
    let (table, rights) = EMBEDDINGS;
    let embeddings_exist: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{schema}.{table}"))
        .fetch_one(pool)
        .await?;
    let embeddings = if embeddings_exist {
        missing.extend(lacking(pool, schema, table, rights).await?);
        true
    } else {
        false
    };
    if !missing.is_empty() {
        return Err(SchemaCheckError::Missing(missing));
    }
    Ok(SchemaCheck {
        core_schema_version: version,
        embeddings,
    })
}

/// The table itself when it is absent, else each right on it the current role lacks.
async fn lacking(
    pool: &PgPool,
    schema: &str,
    table: &str,
    rights: &[&str],
) -> Result<Vec<String>, sqlx::Error> {
    let name = format!("{schema}.{table}");
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&name)
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(vec![format!("table {name}")]);
    }
    let mut out = Vec::new();
    for right in rights {
        let has: bool = sqlx::query_scalar("SELECT has_table_privilege($1, $2)")
            .bind(&name)
            .bind(*right)
            .fetch_one(pool)
            .await?;
        if !has {
            out.push(format!("{right} on {name}"));
        }
    }
    Ok(out)
}
