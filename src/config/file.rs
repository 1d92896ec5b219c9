//! The config file in force, described as GoodMem's `ActiveLicenseMetadata` describes a
//! license file: name, sha256, size and modification time.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileMetadata {
    pub filename: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub modified_at: Option<DateTime<Utc>>,
}

impl FileMetadata {
    pub fn read(path: &Path) -> std::io::Result<FileMetadata> {
        let bytes = std::fs::read(path)?;
        let meta = std::fs::metadata(path)?;
        Ok(FileMetadata {
            // GoodMem's `filename` is the file's name; where it lives is the operator's.
            filename: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            sha256: hex::encode(Sha256::digest(&bytes)),
            size_bytes: bytes.len() as u64,
            modified_at: meta.modified().ok().map(DateTime::<Utc>::from),
        })
    }
}
