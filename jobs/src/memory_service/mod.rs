//! Memory Service's own database (github.com/chirino/memory-service), worked on in place:
//! eviction of archived conversation groups and orphaned attachments, re-embedding and drift
//! repair over `entry_embeddings`.
//!
//! memwarden never creates, alters or drops a table of Memory Service's. Its statements name
//! Memory Service's schema explicitly, because memwarden's own schema comes first on the
//! search path and has tables of the same names (`conversations`, `attachments`). What
//! memwarden keeps for itself (the content hashes Memory Service does not store) lives in its
//! own schema.

mod check;
mod corpus;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use check::{check, SchemaCheck, SchemaCheckError, KNOWN_CORE_VERSIONS};
pub use corpus::EntryCorpus;

/// The schema of Memory Service's tables: a plain lowercase identifier, so it is written into
/// statements unquoted and cannot carry anything but a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SchemaName(String);

impl SchemaName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SchemaName {
    /// Memory Service's Liquibase changelog creates its tables in `public`.
    fn default() -> Self {
        SchemaName("public".into())
    }
}

impl TryFrom<String> for SchemaName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(SchemaName(s))
        } else {
            Err(format!(
                "`{s}` is not a schema name memwarden can write unquoted: lowercase letters, \
                 digits and `_`, at most 63, not starting with a digit"
            ))
        }
    }
}

impl From<SchemaName> for String {
    fn from(s: SchemaName) -> String {
        s.0
    }
}

impl std::fmt::Display for SchemaName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where Memory Service keeps attachment bytes: its `attachments.storage_key` names a file
/// (`<dir>/<key[0..2]>/<key[2..4]>/<key>`, its filesystem store) or a large object's OID (its
/// PostgreSQL store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentStore {
    Filesystem { dir: PathBuf },
    LargeObjects,
}

/// A Memory Service database to work on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryServiceStore {
    pub schema: SchemaName,
    pub attachments: AttachmentStore,
}

/// The file of a filesystem-store key, as Memory Service lays it out; `None` for a key that
/// Memory Service would refuse too (empty, shorter than 4, or with a path separator or `..`),
/// so no key can name a file outside the directory.
pub fn attachment_file(dir: &std::path::Path, key: &str) -> Option<PathBuf> {
    let key = key.trim();
    if key.len() < 4 || key.contains("..") || key.contains(['/', '\\']) || !key.is_ascii() {
        return None;
    }
    Some(dir.join(&key[..2]).join(&key[2..4]).join(key))
}

/// The content hash memwarden records for an entry's `indexed_content` (hex SHA-256), in SQL,
/// over the column expression `col`.
pub(crate) fn content_hash_sql(col: &str) -> String {
    format!("encode(sha256(convert_to({col}, 'UTF8')), 'hex')")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(SchemaName::try_from("public".to_string()).is_ok());
        assert!(SchemaName::try_from("memory_service2".to_string()).is_ok());
        for bad in ["", "Public", "1abc", "a-b", "a;drop", "a b", "\"x\""] {
            assert!(SchemaName::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn filesystem_keys_stay_inside_the_directory() {
        let dir = Path::new("/srv/att");
        assert_eq!(
            attachment_file(dir, "abcdef-1234"),
            Some(PathBuf::from("/srv/att/ab/cd/abcdef-1234"))
        );
        for bad in [
            "",
            "abc",
            "../etc/passwd",
            "ab/cdef",
            "ab\\cdef",
            "ab..cd",
            "ééée",
        ] {
            assert_eq!(attachment_file(dir, bad), None, "{bad}");
        }
    }
}
