//! The default schedules in test daemons. Off unless a test asks for them, so that a test
//! sees only its own jobs; with `MEMWARDEN_TEST_CRON=fast` every default fires every
//! second instead, which proves that the tests that count jobs count only their own: run
//! `MEMWARDEN_TEST_CRON=fast cargo test --test integration queue` (and `--test reliability`).

use memwarden::config::DEFAULT_NAMES;

/// Whether the suite runs with the default schedules firing every few seconds.
pub fn fast() -> bool {
    std::env::var("MEMWARDEN_TEST_CRON").as_deref() == Ok("fast")
}

/// The `[[schedules]]` entries a test daemon's config ends with.
pub fn for_tests() -> String {
    if fast() {
        DEFAULT_NAMES
            .iter()
            .map(|name| format!("\n[[schedules]]\nname = \"{name}\"\ncron = \"* * * * * *\"\n"))
            .collect()
    } else {
        off()
    }
}

/// Every default schedule switched off, by name alone.
pub fn off() -> String {
    DEFAULT_NAMES
        .iter()
        .map(|name| format!("\n[[schedules]]\nname = \"{name}\"\nenabled = false\n"))
        .collect()
}
