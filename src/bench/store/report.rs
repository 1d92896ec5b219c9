//! The bench's figures: one row per size and backend, printed as a Markdown table with the
//! spec's goals beside them.

use super::{StoreBench, LARGE_OWNER};

/// One backend's figures at one size.
#[derive(Debug, Clone, Default)]
pub(super) struct Row {
    pub(super) size: i64,
    pub(super) backend: String,
    /// Seconds the daemon took to start on this backend (conversion and index build included).
    pub(super) start_secs: f64,
    pub(super) enriched: i64,
    pub(super) enrich_rate: f64,
    pub(super) large_p50_ms: f64,
    pub(super) large_p99_ms: f64,
    pub(super) large_queries: usize,
    pub(super) hnsw_scans: Option<i64>,
    pub(super) small_p99_ms: f64,
    pub(super) scan_rate: f64,
    pub(super) scan_hashing_rate: f64,
    pub(super) peak_rss: f64,
}

pub(super) fn print_table(rows: &[Row], bench: &StoreBench) {
    println!();
    println!(
        "| memories | backend | start s | enrichment memories/s | neighbours {LARGE_OWNER} p50 / p99 ms | HNSW scans | small owners p99 ms | sync scan /s | hashing in scan /s | peak RSS MB |"
    );
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in rows {
        println!(
            "| {} | {} | {:.1} | {:.0} ({} in {}) | {:.2} / {:.2} | {} | {:.2} | {:.0} | {:.0} | {:.1} |",
            r.size,
            r.backend,
            r.start_secs,
            r.enrich_rate,
            r.enriched,
            if r.enriched < bench.enrich { "limit" } else { "all" },
            r.large_p50_ms,
            r.large_p99_ms,
            r.hnsw_scans
                .map(|s| format!("{s} of {}", r.large_queries))
                .unwrap_or_else(|| "-".into()),
            r.small_p99_ms,
            r.scan_rate,
            r.scan_hashing_rate,
            r.peak_rss,
        );
    }
    for backend in ["array", "pgvector"] {
        let of = |size: i64| rows.iter().find(|r| r.backend == backend && r.size == size);
        let (Some(first), Some(last)) = (
            bench.sizes.first().and_then(|s| of(*s)),
            bench.sizes.last().and_then(|s| of(*s)),
        ) else {
            continue;
        };
        println!(
            "goal {backend}: enrichment at {} is {:.0}% of its rate at {} (goal >= 80%); p99 neighbours of {LARGE_OWNER} at {}: {:.2} ms (goal < 10 ms on pgvector); sync scan at {}: {:.0}/s (goal >= 200,000/s)",
            last.size,
            100.0 * last.enrich_rate / first.enrich_rate.max(f64::MIN_POSITIVE),
            first.size,
            last.size,
            last.large_p99_ms,
            last.size,
            last.scan_rate,
        );
    }
}
