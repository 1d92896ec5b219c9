//! Per-(kind, queue) metric handles, looked up once per job instead of registering five
//! labelled series per job (each registration clones its labels and hashes them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram};

use crate::telemetry::metrics::{JOBS_FINISHED, JOBS_IN_FLIGHT, JOB_DURATION, JOB_WAIT};

/// The outcomes `memwarden_jobs_finished_total` counts.
pub const OUTCOMES: [&str; 6] = [
    "succeeded",
    "failed",
    "retryable",
    "canceled",
    "snoozed",
    "interrupted",
];

pub struct JobMetrics {
    pub wait: Histogram,
    pub duration: Histogram,
    pub in_flight: Gauge,
    finished: [Counter; OUTCOMES.len()],
}

impl JobMetrics {
    fn new(kind: &str, queue: &str) -> Self {
        let (k, q) = (kind.to_string(), queue.to_string());
        JobMetrics {
            wait: metrics::histogram!(JOB_WAIT, "kind" => k.clone(), "queue" => q.clone()),
            duration: metrics::histogram!(JOB_DURATION, "kind" => k.clone(), "queue" => q.clone()),
            in_flight: metrics::gauge!(JOBS_IN_FLIGHT, "queue" => q.clone()),
            finished: OUTCOMES.map(|o| {
                metrics::counter!(JOBS_FINISHED, "kind" => k.clone(), "queue" => q.clone(), "outcome" => o)
            }),
        }
    }

    pub fn finished(&self, outcome: &str) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.finished[i].increment(1);
        }
    }
}

#[derive(Default)]
pub struct MetricsCache {
    by_kind: Mutex<HashMap<(String, String), Arc<JobMetrics>>>,
}

impl MetricsCache {
    pub fn get(&self, kind: &str, queue: &str) -> Arc<JobMetrics> {
        let mut map = self.by_kind.lock().expect("metrics cache lock");
        if let Some(m) = map.get(&(kind.to_string(), queue.to_string())) {
            return m.clone();
        }
        let m = Arc::new(JobMetrics::new(kind, queue));
        map.insert((kind.to_string(), queue.to_string()), m.clone());
        m
    }
}
