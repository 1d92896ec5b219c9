//! `memwarden bench enrich`: N memories over `owners` owners inserted with one plain SQL
//! `INSERT` (the trigger enqueues each), enriched by the real daemon with the configured
//! embedder (`hash` by default); timed from the insert until every memory is enriched.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use memwarden::startup::Kinds;

use super::fake_provider::FakeProvider;
use super::support::{
    bench_settings, default_queue, in_fresh_database, migrated_pool, reset_peak_rss, rss_line,
    rss_mb, start_daemon,
};

pub async fn enrich(server_url: &str, n: i64, owners: i64, concurrency: u32) -> Result<()> {
    in_fresh_database(server_url, "enrich", |url| async move {
        run(url, n, owners, concurrency, "").await.map(|_| ())
    })
    .await
}

/// `memwarden bench enrich-remote`: the same enrichment against an OpenAI-compatible provider
/// of `latency` per request and `rpm` requests a minute, one request per memory and then
/// coalesced, each on a fresh database, side by side.
pub async fn enrich_remote(
    server_url: &str,
    n: i64,
    owners: i64,
    concurrency: u32,
    latency: Duration,
    rpm: u32,
) -> Result<()> {
    let mut rates = Vec::new();
    for (mode, coalesce) in [("one request per memory", false), ("coalesced", true)] {
        let provider = FakeProvider::start(latency, rpm).await?;
        let config = format!(
            "[embedding]\nprovider = \"openai\"\nbase_url = \"{}\"\nmodel = \"text-embedding-3-small\"\n\
             dimensions = 384\nrequests_per_minute = {rpm}\ncoalesce = {coalesce}\n",
            provider.url
        );
        println!(
            "-- {mode}: provider {} ms per request, {rpm} requests/min",
            latency.as_millis()
        );
        let rate = std::sync::Arc::new(std::sync::Mutex::new(0.0));
        let out = rate.clone();
        in_fresh_database(server_url, "enrich_remote", |url| async move {
            *out.lock().expect("rate") = run(url, n, owners, concurrency, &config).await?;
            Ok(())
        })
        .await?;
        let (requests, inputs, limited) = provider.counts();
        println!(
            "provider: {requests} requests answered ({:.1} inputs each), {limited} refused with 429",
            inputs as f64 / requests.max(1) as f64
        );
        rates.push((mode, *rate.lock().expect("rate")));
    }
    println!(
        "memwarden enrich-remote N={n} C={concurrency} latency={} ms rpm={rpm}:",
        latency.as_millis()
    );
    for (mode, rate) in &rates {
        println!("  {mode}: {rate:.0} memories/s");
    }
    Ok(())
}

/// Enriches `n` new memories on a daemon configured with `config`; the rate, in memories/s.
async fn run(url: String, n: i64, owners: i64, concurrency: u32, config: &str) -> Result<f64> {
    let pool = migrated_pool(&url).await?;
    let mut settings = bench_settings(config, &url)?;
    default_queue(&mut settings, concurrency, None)?;
    let from = reset_peak_rss();
    let daemon = start_daemon(settings, Kinds::Daemon).await?;
    let port = daemon.addr;
    let t0 = Instant::now();
    sqlx::query(
        "INSERT INTO memories (owner_id, memory_type, content, created_at) \
         SELECT 'owner-' || (g % $2), (ARRAY['Decision','Preference','Insight','Context','Pattern'])[1 + g % 5], \
                'Memory ' || g || ': the team discussed postgres queues, rust services and deploys with Alice Walker; ' || \
                'topic ' || (g % 37) || ' #memwarden', now() - ((g % 600) || ' minutes')::interval \
         FROM generate_series(1, $1) g",
    )
    .bind(n)
    .bind(owners)
    .execute(&pool)
    .await?;
    let mut peak_rss = rss_mb();
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM memories WHERE enriched_at IS NULL")
                .fetch_one(&pool)
                .await?;
        peak_rss = peak_rss.max(rss_mb());
        if left == 0 {
            break;
        }
        if daemon.is_finished() {
            bail!("the daemon stopped during the benchmark");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dt = t0.elapsed().as_secs_f64();
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE kind = 'enrichment' AND status = 'failed'",
    )
    .fetch_one(&pool)
    .await?;
    let (edges, entities): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM memory_edges), (SELECT count(*) FROM memory_entities)",
    )
    .fetch_one(&pool)
    .await?;
    println!("memwarden enrich N={n} owners={owners} C={concurrency}: {:.0} memories/s ({dt:.2} s from insert to all enriched)", n as f64 / dt);
    println!("failed jobs {failed}, edges {edges}, entities {entities}, peak rss_mb {peak_rss:.1}");
    // The check, as an AutoMem client makes it: the status route drains to 0.
    let status = drained_enrichment_status(port).await?;
    println!("GET /enrichment/status: {status}");
    println!(
        "{}",
        rss_line(&format!("enrich N={n} C={concurrency}"), from)
    );
    daemon.stop(Duration::from_secs(10)).await?;
    Ok(n as f64 / dt)
}

/// AutoMem's `GET /enrichment/status` from the daemon's control port, once its `queue_depth`
/// is 0 (within 10 s: the last completions are written in batches).
async fn drained_enrichment_status(port: SocketAddr) -> Result<serde_json::Value> {
    let url = format!("http://{port}/enrichment/status");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status: serde_json::Value =
            reqwest::get(&url).await?.error_for_status()?.json().await?;
        if status["queue_depth"] == 0 {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!("/enrichment/status still reports work 10 s after every memory was enriched: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
