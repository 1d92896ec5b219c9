//! Every metric the daemon exports (operations.md), named and described once, and the
//! process-wide Prometheus recorder that renders them at `/metrics`. Code that records a
//! metric names it with a constant from here, never with a literal.

use std::sync::OnceLock;

use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::lifecycle::State;

pub const LIFECYCLE_STATE: &str = "memwarden_lifecycle_state";
pub const BUILD_INFO: &str = "memwarden_build_info";
pub const JOBS_ENQUEUED: &str = "memwarden_jobs_enqueued_total";
pub const JOBS_FINISHED: &str = "memwarden_jobs_finished_total";
pub const JOB_DURATION: &str = "memwarden_job_duration_seconds";
pub const JOB_WAIT: &str = "memwarden_job_wait_seconds";
pub const JOBS_IN_FLIGHT: &str = "memwarden_jobs_in_flight";
pub const QUEUE_DEPTH: &str = "memwarden_queue_depth";
pub const QUEUE_OLDEST_AGE: &str = "memwarden_queue_oldest_available_age_seconds";
pub const QUEUE_PAUSED: &str = "memwarden_queue_paused";
pub const SYNC_DRIFT: &str = "memwarden_sync_drift";
pub const EVICTED: &str = "memwarden_evicted_total";
pub const PURGED: &str = "memwarden_purged_total";
pub const MEMORY_POLICY_ENTRIES: &str = "memwarden_memory_policy_entries_total";
pub const ENRICHMENT_PROCESSED: &str = "memwarden_enrichment_processed_total";
pub const ENRICHMENT_FAILED: &str = "memwarden_enrichment_failed_total";
pub const LEASE_LOST: &str = "memwarden_lease_lost_total";
pub const REAPED_JOBS: &str = "memwarden_reaped_jobs_total";
pub const DB_ERRORS: &str = "memwarden_db_errors_total";
pub const LOOP_RESTARTS: &str = "memwarden_loop_restarts_total";
pub const LISTEN_CONNECTED: &str = "memwarden_listen_connected";
pub const VECTOR_BACKEND: &str = "memwarden_vector_backend";
pub use memwarden_jobs::embedding::{EMBEDDING_INPUTS, EMBEDDING_REQUESTS};

/// Every metric above: what the dashboards, the alert rules and their tests may refer to.
pub const ALL: &[&str] = &[
    LIFECYCLE_STATE,
    BUILD_INFO,
    JOBS_ENQUEUED,
    JOBS_FINISHED,
    JOB_DURATION,
    JOB_WAIT,
    JOBS_IN_FLIGHT,
    QUEUE_DEPTH,
    QUEUE_OLDEST_AGE,
    QUEUE_PAUSED,
    SYNC_DRIFT,
    EVICTED,
    PURGED,
    MEMORY_POLICY_ENTRIES,
    ENRICHMENT_PROCESSED,
    ENRICHMENT_FAILED,
    LEASE_LOST,
    REAPED_JOBS,
    DB_ERRORS,
    LOOP_RESTARTS,
    LISTEN_CONNECTED,
    VECTOR_BACKEND,
    EMBEDDING_REQUESTS,
    EMBEDDING_INPUTS,
];

/// The histograms among them, exported as `_bucket`, `_sum` and `_count` series.
pub const HISTOGRAMS: &[&str] = &[JOB_DURATION, JOB_WAIT];

fn describe_all() {
    describe_gauge!(
        LIFECYCLE_STATE,
        "1 for the lifecycle state the daemon is in (STARTING, READY, DRAINING, QUIESCED), 0 for the others"
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version is the label");
    describe_counter!(
        JOBS_ENQUEUED,
        "Jobs enqueued by this process, by kind and queue"
    );
    describe_counter!(
        JOBS_FINISHED,
        "Attempts this process ended, by kind, queue and outcome"
    );
    describe_histogram!(JOB_DURATION, Unit::Seconds, "How long an attempt ran");
    describe_histogram!(
        JOB_WAIT,
        Unit::Seconds,
        "From a job's run_at to the start of its attempt"
    );
    describe_gauge!(JOBS_IN_FLIGHT, "Attempts running in this process, by queue");
    describe_gauge!(
        QUEUE_DEPTH,
        "Jobs by queue and status (available, scheduled, running, retryable, failed), read every few seconds"
    );
    describe_gauge!(
        QUEUE_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest claimable job, by queue"
    );
    describe_gauge!(QUEUE_PAUSED, "1 while the queue is paused");
    describe_gauge!(
        SYNC_DRIFT,
        "Drift between memories and embeddings by kind: left after the last repair, or found by the last dry run"
    );
    describe_counter!(EVICTED, "Rows evicted, by resource type");
    describe_counter!(PURGED, "Rows removed by job-purge, by table");
    describe_counter!(
        MEMORY_POLICY_ENTRIES,
        "Conversation entries the memory-configuration jobs changed, by action (trimmed, summarised, expired, redacted, dropped)"
    );
    describe_counter!(ENRICHMENT_PROCESSED, "Memories enriched by this process");
    describe_counter!(
        ENRICHMENT_FAILED,
        "Enrichment attempts that failed in this process"
    );
    describe_counter!(
        LEASE_LOST,
        "Jobs whose lease this process lost (reaped, or taken over) before it could write their end"
    );
    describe_counter!(
        REAPED_JOBS,
        "Jobs of dead workers that the reaper made claimable again"
    );
    describe_counter!(DB_ERRORS, "Database operations that failed, by operation");
    describe_counter!(
        LOOP_RESTARTS,
        "Supervised loops restarted after they failed or panicked, by loop"
    );
    describe_gauge!(
        LISTEN_CONNECTED,
        "1 while the LISTEN connection is up; 0 means wake-ups fall back to polling"
    );
    describe_gauge!(
        VECTOR_BACKEND,
        "1 for the backend the store's vectors are kept in (pgvector: HNSW indexes; array: exact scans), 0 for the other"
    );
    describe_counter!(
        EMBEDDING_REQUESTS,
        "Requests to the embedding provider, by provider and status"
    );
    describe_counter!(
        EMBEDDING_INPUTS,
        "Texts sent to the embedding provider, by provider"
    );
}

/// Counts a failed database operation.
pub fn db_error(op: &'static str) {
    ::metrics::counter!(DB_ERRORS, "op" => op).increment(1);
}

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder. Installed once; later calls share it, so several
/// apps in one test process all render the same registry.
pub fn recorder() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                ])
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be global (a test harness); ours still renders ours.
            let _ = ::metrics::set_global_recorder(recorder);
            describe_all();
            ::metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

/// `memwarden_lifecycle_state{state}`: 1 for the current state, 0 for the others.
/// 1 for the backend the store's vectors are kept in (pgvector or array), 0 for the other.
pub fn publish_vector_backend(current: memwarden_jobs::vector::Backend) {
    use memwarden_jobs::vector::Backend;
    for b in [Backend::Pgvector, Backend::Array] {
        ::metrics::gauge!(VECTOR_BACKEND, "backend" => b.to_string()).set(if b == current {
            1.0
        } else {
            0.0
        });
    }
}

pub fn publish_state(current: State) {
    for s in State::ALL {
        ::metrics::gauge!(LIFECYCLE_STATE, "state" => s.as_str()).set(if s == current {
            1.0
        } else {
            0.0
        });
    }
}
