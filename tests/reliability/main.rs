//! The reliability suite: the real daemon binary, as separate processes, against a
//! real PostgreSQL, under faults. It proves the guarantees of `spec/queue.md`: at-least-once,
//! nothing lost, a dead worker's jobs rescued within lease + reaper interval, a zombie's late
//! writes refused by the lease guard, clean drains, and no panic or 5xx on bad input.
//!
//! Scenarios (one test each):
//!
//! | test | fault |
//! | --- | --- |
//! | `storm::kill_9_storm` | 3 daemons work 20,000 jobs; a random one is SIGKILLed every 1–3 s and restarted |
//! | `pg_restart::postgres_restart_mid_run` | the private cluster is stopped for 10 s mid-run, then started |
//! | `drain::drain_under_load` | SIGTERM at a random moment under full load, 20 times |
//! | `zombie::zombie_worker_is_fenced_by_the_lease_guard` | SIGSTOP a daemon past its lease, another takes its jobs, SIGCONT |
//! | `bad_input::*` | proptest of every control-port request body, the config parser, cron, RFC 3339 and ISO 8601 inputs |
//! | `pool::pool_exhaustion_and_slow_queries` | a pool of 2 for 16 workers, `statement_timeout` 250 ms, tables locked |
//!
//! Regression tests for four daemon bugs this suite found (all fixed since):
//!
//! - `drain::stop_signal_during_the_first_connect_is_not_lost`: a SIGTERM that arrived while
//!   the first database connect was in progress was consumed and forgotten; the daemon went
//!   READY and ran on. A slow TCP proxy in front of PostgreSQL makes the window certain.
//! - `bad_input::config::accepted_seconds_fit_a_duration`: `shutdown.grace_period = 1e300`
//!   (and the like) passed validation, then panicked the daemon.
//! - `bad_input::nul::a_nul_in_the_justification_never_skips_the_audit_row`: the admin call
//!   took effect and its audit row was not written.
//! - `bad_input::config::env_name_with_an_empty_segment_is_named`: `MEMWARDEN___=0` failed
//!   with an error that named no key.
//!
//! Each scenario prints one row of the summary table with the prefix `RELIABILITY|`, straight
//! to stderr so it shows in a plain `cargo test` run:
//!
//! ```text
//! RELIABILITY| scenario | runs | faults injected | jobs | jobs lost | duplicate effects | worst recovery | wall time |
//! ```
//!
//! `cargo test --test reliability 2>&1 | grep '^RELIABILITY|'` gathers the table. "Duplicate
//! effects" counts executions that no failed or lost attempt explains (must be 0); in brackets,
//! the re-executions that followed a lost or failed attempt, which at-least-once allows and
//! an idempotent handler absorbs.
//!
//! Running it:
//!
//! - `cargo test --test reliability -- --test-threads=2` runs it in CI (about 3 minutes on
//!   2 cores). Every scenario is bounded in jobs and time and stops by itself.
//! - `DATABASE_URL` is honoured, as in the integration tests, for every scenario but the
//!   PostgreSQL restart, which always starts a private cluster of its own (it must be free to
//!   stop it). Without `DATABASE_URL` a private throwaway cluster serves the rest.
//! - **Long mode, by hand**: `MEMWARDEN_RELIABILITY_LONG=1 cargo test --test reliability --
//!   --test-threads=1` scales the storm to 100,000 jobs (and at least 40 kills), the
//!   PostgreSQL restart to three outages, the drain to 100 rounds, the zombie to 3 rounds,
//!   the control-port fuzzing to 5 minutes and up to 100,000 requests, the parser properties
//!   to 20,000 cases each, and the pool scenario to 5,000 jobs per phase and 10 s locks. It
//!   takes about 15 minutes; it is bounded and stops by itself too.
//!

mod bad_input;
mod drain;
mod harness;
mod pg_restart;
mod pool;
mod storm;
mod zombie;
