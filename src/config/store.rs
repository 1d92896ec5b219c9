//! `[store]`: which database the memory-store work runs on. memwarden's own tables
//! (`native`, the default), or a Memory Service database worked on in place
//! (`kind = "memory-service"`): eviction of its archived conversation groups and orphaned
//! attachments, and re-embedding and drift repair of its `entry_embeddings`.

use std::path::PathBuf;

use memwarden_jobs::memory_service::{AttachmentStore, MemoryServiceStore, SchemaName};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    #[default]
    Native,
    MemoryService,
}

/// Memory Service's attachment stores (`memory-service.attachments.store`): files, or
/// PostgreSQL large objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachmentKind {
    #[default]
    Filesystem,
    LargeObjects,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    pub kind: StoreKind,
    /// The schema of Memory Service's tables (`public` unless it was installed elsewhere).
    pub schema: SchemaName,
    pub attachments: AttachmentKind,
    /// The root of Memory Service's filesystem attachment store (its
    /// `memory-service.attachments.fs.directory`), for `attachments = "filesystem"`.
    pub attachments_dir: Option<String>,
}

impl StoreSettings {
    /// The Memory Service database to work on, when that is the store.
    pub fn memory_service(&self) -> Option<MemoryServiceStore> {
        if self.kind != StoreKind::MemoryService {
            return None;
        }
        let attachments = match self.attachments {
            AttachmentKind::LargeObjects => AttachmentStore::LargeObjects,
            AttachmentKind::Filesystem => AttachmentStore::Filesystem {
                dir: PathBuf::from(self.attachments_dir.clone().unwrap_or_default()),
            },
        };
        Some(MemoryServiceStore {
            schema: self.schema.clone(),
            attachments,
        })
    }
}
