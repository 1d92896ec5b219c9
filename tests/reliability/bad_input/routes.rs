//! The control-port routes the fuzz sends bodies to: method, path (with a name or a job id in
//! it), the fields a body may have, and a valid body for each; `waits` marks those whose reply
//! waits for the job they enqueue.

use super::strategies::{n, s, J};

#[derive(Debug, Clone, Copy)]
pub(super) enum Param {
    None,
    Name,
    JobId,
}

pub(super) struct Route {
    pub(super) method: &'static str,
    pub(super) path: &'static str,
    pub(super) param: Param,
    pub(super) fields: &'static [&'static str],
    pub(super) valid: fn() -> Vec<(String, J)>,
    /// The reply waits for the job it enqueues (Memory Service's evict): fuzzed against a
    /// daemon that runs jobs, in a test of its own.
    pub(super) waits: bool,
}

const JOB_FIELDS: &[&str] = &[
    "kind",
    "args",
    "queue",
    "priority",
    "run_at",
    "runAt",
    "max_attempts",
    "maxAttempts",
    "unique_key",
    "uniqueKey",
    "justification",
];
const DRAIN_FIELDS: &[&str] = &[
    "reason",
    "timeout_sec",
    "timeoutSec",
    "wait_for_quiesce",
    "waitForQuiesce",
    "justification",
];
const PURGE_FIELDS: &[&str] = &[
    "older_than",
    "olderThan",
    "statuses",
    "limit",
    "dry_run",
    "dryRun",
    "justification",
];
const SCHEDULE_FIELDS: &[&str] = &[
    "cron",
    "kind",
    "args",
    "queue",
    "enabled",
    "timezone",
    "justification",
];
const NO_FIELDS: &[&str] = &["justification", "reason", "force"];
const EVICT_FIELDS: &[&str] = &[
    "retention_period",
    "retentionPeriod",
    "resource_types",
    "resourceTypes",
    "dry_run",
    "dryRun",
    "justification",
];
const REPROCESS_FIELDS: &[&str] = &["ids", "justification"];
const REEMBED_FIELDS: &[&str] = &["batch_size", "limit", "force", "justification"];
const SYNC_FIELDS: &[&str] = &["batch_size", "dry_run", "justification"];

fn obj(fields: &[(&str, J)]) -> Vec<(String, J)> {
    fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn valid_job() -> Vec<(String, J)> {
    obj(&[
        ("kind", s("probe")),
        ("args", J::Obj(vec![("sleep_ms".into(), n("10"))])),
        ("queue", s("fuzz")),
        ("priority", n("3")),
        ("run_at", s("2999-01-01T00:00:00Z")),
        ("max_attempts", n("3")),
        ("unique_key", s("fuzz-key")),
    ])
}

fn valid_drain() -> Vec<(String, J)> {
    obj(&[
        ("reason", s("fuzz")),
        ("timeout_sec", n("1")),
        ("wait_for_quiesce", J::Bool(false)),
    ])
}

fn valid_purge() -> Vec<(String, J)> {
    obj(&[
        ("older_than", s("2000-01-01T00:00:00Z")),
        (
            "statuses",
            J::Arr(vec![s("BACKGROUND_JOB_SUCCEEDED"), s("failed")]),
        ),
        ("limit", n("10")),
        ("dry_run", J::Bool(true)),
    ])
}

fn valid_schedule() -> Vec<(String, J)> {
    obj(&[
        ("cron", s("0 0 * * * *")),
        ("kind", s("probe")),
        ("args", J::Obj(vec![])),
        ("queue", s("fuzz")),
        ("enabled", J::Bool(false)),
        ("timezone", s("Europe/Berlin")),
    ])
}

fn valid_evict() -> Vec<(String, J)> {
    obj(&[
        ("retention_period", s("P30D")),
        (
            "resource_types",
            J::Arr(vec![s("conversations"), s("memories")]),
        ),
        ("dry_run", J::Bool(true)),
    ])
}

fn valid_reembed() -> Vec<(String, J)> {
    obj(&[
        ("batch_size", J::Num("16".into())),
        ("limit", J::Num("10".into())),
        ("force", J::Bool(false)),
    ])
}

fn valid_sync() -> Vec<(String, J)> {
    obj(&[
        ("batch_size", J::Num("8".into())),
        ("dry_run", J::Bool(true)),
    ])
}

fn valid_reprocess() -> Vec<(String, J)> {
    obj(&[(
        "ids",
        J::Arr(vec![s("0190f5a0-0000-7000-8000-000000000001")]),
    )])
}

fn valid_empty() -> Vec<(String, J)> {
    Vec::new()
}

pub(super) static ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/v1/jobs",
        param: Param::None,
        fields: JOB_FIELDS,
        valid: valid_job,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/admin/drain",
        param: Param::None,
        fields: DRAIN_FIELDS,
        valid: valid_drain,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/admin:drain",
        param: Param::None,
        fields: DRAIN_FIELDS,
        valid: valid_drain,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/admin/background-jobs:purge",
        param: Param::None,
        fields: PURGE_FIELDS,
        valid: valid_purge,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/jobs/purge",
        param: Param::None,
        fields: PURGE_FIELDS,
        valid: valid_purge,
        waits: false,
    },
    Route {
        method: "PUT",
        path: "/v1/schedules/{}",
        param: Param::Name,
        fields: SCHEDULE_FIELDS,
        valid: valid_schedule,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/queues/{}/pause",
        param: Param::Name,
        fields: NO_FIELDS,
        valid: valid_empty,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/jobs/{}/cancel",
        param: Param::JobId,
        fields: NO_FIELDS,
        valid: valid_empty,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/work/evict",
        param: Param::None,
        fields: EVICT_FIELDS,
        valid: valid_evict,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/enrichment/reprocess",
        param: Param::None,
        fields: REPROCESS_FIELDS,
        valid: valid_reprocess,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/work/reprocess",
        param: Param::None,
        fields: REPROCESS_FIELDS,
        valid: valid_reprocess,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/admin/evict",
        param: Param::None,
        fields: EVICT_FIELDS,
        valid: valid_evict,
        waits: true,
    },
    Route {
        method: "POST",
        path: "/v1/work/reembed",
        param: Param::None,
        fields: REEMBED_FIELDS,
        valid: valid_reembed,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/v1/work/sync",
        param: Param::None,
        fields: SYNC_FIELDS,
        valid: valid_sync,
        waits: false,
    },
    Route {
        method: "POST",
        path: "/admin/reembed",
        param: Param::None,
        fields: REEMBED_FIELDS,
        valid: valid_reembed,
        waits: true,
    },
    Route {
        method: "POST",
        path: "/admin/sync",
        param: Param::None,
        fields: SYNC_FIELDS,
        valid: valid_sync,
        waits: true,
    },
];
