//! Where settings come from, in order: the TOML file, `DATABASE_URL`, the environment
//! (`MEMWARDEN_<SECTION>__<KEY>` and the short forms), then the command-line flags. figment
//! merges the layers and deserializes them, so an error names the key it is about.

use std::path::Path;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;

use super::{ConfigError, Overrides, Settings};

/// The variables the seed systems' operators already set, read as the settings they mean.
/// They are applied before memwarden's own variables, so `MEMWARDEN_*` wins when both are set.
const VENDOR_FORMS: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    // AutoMem (automem/config.py): the API token and the admin token.
    ("AUTOMEM_API_TOKEN", "auth.api_token"),
    ("ADMIN_API_TOKEN", "auth.admin_token"),
    // Memory Service's `--admin-require-justification` as its environment spells it.
    (
        "MEMORY_SERVICE_ADMIN_REQUIRE_JUSTIFICATION",
        "admin.require_justification",
    ),
];

/// Environment variable short forms that operators script against (operations.md).
const SHORT_FORMS: &[(&str, &str)] = &[
    ("MEMWARDEN_API_TOKEN", "auth.api_token"),
    ("MEMWARDEN_ADMIN_TOKEN", "auth.admin_token"),
    (
        "MEMWARDEN_ADMIN_REQUIRE_JUSTIFICATION",
        "admin.require_justification",
    ),
];

/// Whether a variable is one of the seed systems' (applied first) or memwarden's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Origin {
    Vendor,
    Memwarden,
}

/// The settings key an environment variable sets, if it sets one, and whose name it is.
fn key_of(name: &str) -> Result<Option<(Origin, String)>, ConfigError> {
    if let Some((_, key)) = VENDOR_FORMS.iter().find(|(n, _)| *n == name) {
        return Ok(Some((Origin::Vendor, key.to_string())));
    }
    Ok(memwarden_key_of(name)?.map(|key| (Origin::Memwarden, key)))
}

/// The key of one of memwarden's own variables. `MEMWARDEN_CONFIG` and other names without
/// `__` are not settings.
fn memwarden_key_of(name: &str) -> Result<Option<String>, ConfigError> {
    if let Some((_, key)) = SHORT_FORMS.iter().find(|(n, _)| *n == name) {
        return Ok(Some(key.to_string()));
    }
    let Some(rest) = name.strip_prefix("MEMWARDEN_") else {
        return Ok(None);
    };
    if !rest.contains("__") {
        return Ok(None);
    }
    let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if parts.iter().any(String::is_empty) {
        return Err(ConfigError::invalid(
            name,
            "is not of the form MEMWARDEN_<SECTION>__<KEY> (a part of the key is empty)",
        ));
    }
    Ok(Some(parts.join(".")))
}

/// `settings.schedules.0.cron` → `schedules[0].cron`.
fn key_path(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if part.parse::<usize>().is_ok() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    if out.is_empty() {
        "(root)".into()
    } else {
        out
    }
}

/// An environment value as the TOML value it spells (`5` a number, `true` a boolean, `[1, 2]`
/// an array), or else the text itself. Read with the `toml` crate rather than figment's own
/// value parser, which panics on a quoted string holding a backslash after a multi-byte
/// character (figment 0.10.19, `value/escape.rs`).
fn env_value(text: &str) -> toml::Value {
    use serde::Deserialize;
    match toml::Value::deserialize(toml::de::ValueDeserializer::new(text)) {
        // A date spelled in a variable is meant as text: no setting is a TOML datetime.
        Ok(toml::Value::Datetime(_)) | Err(_) => toml::Value::String(text.to_string()),
        Ok(value) => value,
    }
}

pub(super) fn merge(
    text: &str,
    path: Option<&Path>,
    env: &[(String, String)],
    overrides: &Overrides,
) -> Result<Settings, ConfigError> {
    // TOML syntax first, so that a broken file is reported as such, with its position.
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            path: path.map(Path::to_path_buf).unwrap_or_default(),
            message: e.to_string(),
        })?;
    let mut figment = Figment::new().merge(Toml::string(text));
    // DATABASE_URL and the seed systems' variables first, so memwarden's own win over them.
    let mut vars: Vec<(Origin, String, &str)> = Vec::new();
    for (name, value) in env {
        if let Some((origin, key)) = key_of(name)? {
            vars.push((origin, key, value));
        }
    }
    vars.sort_by_key(|(origin, _, _)| *origin);
    for (_, key, value) in vars {
        figment = figment.merge(Serialized::default(&key, env_value(value)));
    }
    if let Some(url) = &overrides.database_url {
        figment = figment.merge(Serialized::default("database.url", url));
    }
    if let Some(addr) = &overrides.control_addr {
        figment = figment.merge(Serialized::default("control.addr", addr));
    }
    if overrides.require_justification {
        figment = figment.merge(Serialized::default("admin.require_justification", true));
    }
    figment.extract::<Settings>().map_err(|e| {
        let e = e
            .into_iter()
            .next()
            .expect("an error has at least one cause");
        ConfigError::invalid(key_path(&e.path), e.kind.to_string())
    })
}
