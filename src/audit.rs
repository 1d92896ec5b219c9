//! The admin audit log: a tracing INFO event `Admin audit` and a hash-chained row in
//! `audit_log` for every admin, auditor and indexer call, allowed or refused.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// The chain's start: the `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Serialises the writers of all replicas, so the chain never forks.
const CHAIN_LOCK: i64 = 0x6d65_6d77_6175_6474; // "memwaudt"

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub caller: String,
    pub role: Option<String>,
    pub method: String,
    pub path: String,
    pub status: i32,
    pub client_ip: Option<String>,
    pub justification: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// What a call contributes to its entry.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub caller: String,
    pub role: Option<String>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub client_ip: Option<String>,
    pub justification: Option<String>,
}

impl AuditEntry {
    /// The row's content, in a fixed order and format, as the hash covers it.
    fn canonical(&self) -> String {
        serde_json::json!([
            self.id,
            self.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            self.caller,
            self.role,
            self.method,
            self.path,
            self.status,
            self.client_ip,
            self.justification,
        ])
        .to_string()
    }

    pub fn expected_hash(&self) -> String {
        hex::encode(Sha256::digest(
            format!("{}{}", self.prev_hash, self.canonical()).as_bytes(),
        ))
    }
}

/// Logs the entry, then appends it to the chain. The log line is written even when the
/// database is away; the row is not, and that is counted and logged.
pub async fn record(pool: Option<&PgPool>, r: AuditRecord) {
    tracing::info!(
        caller = %r.caller,
        role = r.role.as_deref().unwrap_or(""),
        method = %r.method,
        path = %r.path,
        status = r.status,
        // Memory Service's name for the field, which its operators' log queries use.
        clientIP = r.client_ip.as_deref().unwrap_or(""),
        justification = r.justification.as_deref().unwrap_or(""),
        "Admin audit"
    );
    let Some(pool) = pool else { return };
    // PostgreSQL stores no NUL in text: keep the entry, with the character made visible.
    let clean = |s: &str| s.replace('\0', "\u{FFFD}");
    let r = AuditRecord {
        caller: clean(&r.caller),
        method: clean(&r.method),
        path: clean(&r.path),
        justification: r.justification.as_deref().map(clean),
        ..r
    };
    if let Err(e) = append(pool, &r).await {
        crate::telemetry::metrics::db_error("audit");
        tracing::error!(error = %e, path = %r.path, "audit row not written");
    }
}

async fn append(pool: &PgPool, r: &AuditRecord) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CHAIN_LOCK)
        .execute(&mut *tx)
        .await?;
    let prev: Option<String> =
        sqlx::query_scalar("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
    let id: i64 = sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence('audit_log', 'id'))")
        .fetch_one(&mut *tx)
        .await?;
    // Microseconds, as PostgreSQL stores them, so the hash is recomputable from the row.
    let now = Utc::now();
    let at = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
    let mut entry = AuditEntry {
        id,
        at,
        caller: r.caller.clone(),
        role: r.role.clone(),
        method: r.method.clone(),
        path: r.path.clone(),
        status: r.status as i32,
        client_ip: r.client_ip.clone(),
        justification: r.justification.clone(),
        prev_hash: prev.unwrap_or_else(|| GENESIS.to_string()),
        hash: String::new(),
    };
    entry.hash = entry.expected_hash();
    sqlx::query(
        "INSERT INTO audit_log (id, at, caller, role, method, path, status, client_ip, justification, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(entry.id)
    .bind(entry.at)
    .bind(&entry.caller)
    .bind(&entry.role)
    .bind(&entry.method)
    .bind(&entry.path)
    .bind(entry.status)
    .bind(&entry.client_ip)
    .bind(&entry.justification)
    .bind(&entry.prev_hash)
    .bind(&entry.hash)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

pub const ENTRY_COLUMNS: &str =
    "id, at, caller, role, method, path, status, client_ip, justification, prev_hash, hash";

/// Entries with id below `before` (newest first).
pub async fn list(
    pool: &PgPool,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ENTRY_COLUMNS} FROM audit_log WHERE ($1::bigint IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
    ))
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Where the chain breaks.
#[derive(Debug, PartialEq)]
pub struct Break {
    pub id: i64,
    pub reason: &'static str,
}

/// Walks the chain from the first row. Returns the number of rows checked, or the first row
/// that was changed, or whose predecessor was changed or removed.
pub async fn verify(pool: &PgPool) -> Result<Result<u64, Break>, sqlx::Error> {
    use futures::TryStreamExt;
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM audit_log ORDER BY id");
    let mut rows = sqlx::query_as::<_, AuditEntry>(&sql).fetch(pool);
    let mut expected_prev = GENESIS.to_string();
    let mut n = 0u64;
    while let Some(row) = rows.try_next().await? {
        if row.prev_hash != expected_prev {
            return Ok(Err(Break {
                id: row.id,
                reason:
                    "its previous hash does not match: the row before it was changed or removed",
            }));
        }
        if row.hash != row.expected_hash() {
            return Ok(Err(Break {
                id: row.id,
                reason: "its content does not match its hash: the row was changed",
            }));
        }
        expected_prev = row.hash;
        n += 1;
    }
    Ok(Ok(n))
}
