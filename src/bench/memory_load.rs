//! What the `memwarden bench memory` runs write: the one configuration they work under and
//! the content of their entries.

use anyhow::Result;
use sqlx::PgPool;

/// The SSN every bench entry holds, and the privacy pattern that matches it.
pub(super) const SSN: &str = "123-45-6789";
pub(super) const SSN_PATTERN: &str = "\\b\\d{3}-\\d{2}-\\d{4}\\b";
/// A bench entry's content as SQL, numbered by `g`: a typical chat turn of about 130
/// characters with one SSN in it.
pub(super) const CONTENT: &str =
    "'Message ' || g || ' asks about the deploy. My SSN is 123-45-6789 and \
     the rest of this entry is ordinary text of a typical chat turn.'";

/// The bench's one configuration, `default/bench`.
pub(super) async fn insert_config(pool: &PgPool, config: &serde_json::Value) -> Result<()> {
    sqlx::query("INSERT INTO memory_configs (project, id, config, etag) VALUES ('default', 'bench', $1, 'b')")
        .bind(config)
        .execute(pool)
        .await?;
    Ok(())
}
