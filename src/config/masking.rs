//! The effective settings as `config check` prints them: every secret masked, and the
//! schedules as they will run, defaults included.

use super::schedules::ScheduleConfig;
use super::Settings;

const MASK: &str = "********";

impl Settings {
    pub fn masked_toml(&self) -> String {
        let mut copy = self.clone();
        let mask = |s: &mut Option<String>| {
            if s.is_some() {
                *s = Some(MASK.into());
            }
        };
        mask(&mut copy.auth.api_token);
        mask(&mut copy.auth.admin_token);
        mask(&mut copy.embedding.api_key);
        mask(&mut copy.extraction.api_key);
        mask(&mut copy.blobs.download_url_key);
        for key in &mut copy.auth.keys {
            mask(&mut key.token);
        }
        copy.database.url = copy.database.url.as_deref().map(mask_url_password);
        copy.database.listen_url = copy.database.listen_url.as_deref().map(mask_url_password);
        copy.schedules = self
            .effective_schedules()
            .into_iter()
            .map(|s| ScheduleConfig {
                name: s.name,
                cron: Some(s.cron),
                kind: Some(s.kind),
                args: Some(s.args),
                queue: Some(s.queue),
                enabled: Some(s.enabled),
                timezone: s.timezone,
            })
            .collect();
        toml::to_string_pretty(&copy).unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:********@host/db`.
pub fn mask_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:{MASK}{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}
