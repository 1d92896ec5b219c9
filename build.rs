// `sqlx::migrate!` embeds the migrations at compile time; without this, adding a migration
// does not rebuild the crate and the new file is silently left out.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=tests/fixtures/migrations-before-2026-12-02");
}
