//! Who may call the control port: the API token, AutoMem's admin token, and keys with roles.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub api_token: Option<String>,
    pub admin_token: Option<String>,
    pub keys: Vec<KeyConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub client_id: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

impl KeyConfig {
    /// The sha256 of the key's token, which is what requests are compared against.
    pub fn digest(&self) -> [u8; 32] {
        match (&self.token, &self.token_sha256) {
            (Some(token), _) => Sha256::digest(token.as_bytes()).into(),
            (None, Some(hexed)) => {
                let mut out = [0u8; 32];
                // Validation guarantees 64 hex digits.
                let _ = hex::decode_to_slice(hexed, &mut out);
                out
            }
            (None, None) => [0u8; 32],
        }
    }
}

/// Memory Service's roles. `admin` implies the other two.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Auditor,
    Indexer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Indexer => "indexer",
        }
    }

    /// Whether a caller holding `self` may use a route that needs `needed`.
    pub fn grants(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }
}
