//! `memwarden bench evict`: N soft-deleted conversations with 4 entries each, evicted by the
//! real `eviction` domain function while a writer inserts and reads live conversations.
//!
//! Eviction runs in windows of `window`, alternating with windows where it is stopped, so the
//! writer's latency with and without it is compared over the same minute. This VM's speed
//! drifts more between two quarter-hours than eviction moves the writer, so a baseline taken
//! once before eviction (still printed, for comparison) says more about the hour than about
//! eviction.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use memwarden::config::Schema;
use memwarden_jobs::eviction::EvictionSettings;
use sqlx::PgPool;

use super::support::{checkpoint, in_fresh_database, p99, rss_mb, work_pool};

pub async fn evict(
    server_url: &str,
    conversations: i64,
    settings: EvictionSettings,
    window: Duration,
) -> Result<()> {
    in_fresh_database(server_url, "evict", |url| {
        run(url, conversations, settings, window)
    })
    .await
}

/// One write-and-read of a live conversation: when it started, and how long it took (ms).
type WriterOp = (Instant, f64);

async fn live_writer(pool: PgPool, stop: Arc<AtomicBool>) -> Result<Vec<WriterOp>> {
    let mut ops = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let id: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO conversations (owner_id, title) VALUES ('live', 'w') RETURNING id",
        )
        .fetch_one(&pool)
        .await?;
        sqlx::query("INSERT INTO conversation_entries (conversation_id, role, content) VALUES ($1, 'user', 'hello')")
            .bind(id)
            .execute(&pool)
            .await?;
        let _: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM conversation_entries WHERE conversation_id = $1",
        )
        .bind(id)
        .fetch_one(&pool)
        .await?;
        ops.push((t, t.elapsed().as_secs_f64() * 1000.0));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(ops)
}

/// A stretch of the bench: eviction running in it, or stopped.
struct Span {
    from: Instant,
    to: Instant,
    evicting: bool,
}

/// After eviction stops, the writer's first ops still meet its last commits being flushed: a
/// stopped window is counted from this long after it starts.
const SETTLE: Duration = Duration::from_millis(250);

async fn run(url: String, n: i64, settings: EvictionSettings, window: Duration) -> Result<()> {
    use memwarden_jobs::eviction::{evict, ResourceType, RetentionPeriod};
    let schema = Schema::default();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(memwarden::db::in_schema(url.parse()?, &schema))
        .await?;
    memwarden::db::migrate(&pool, &schema).await?;
    sqlx::query("ALTER TABLE conversation_entries SET (autovacuum_enabled = false)")
        .execute(&pool)
        .await?;
    sqlx::query(
        "INSERT INTO conversations (owner_id, title, created_at, deleted_at) \
         SELECT 'owner-' || (g % 100), 'c', now() - interval '60 days', now() - interval '40 days' - (g || ' seconds')::interval \
         FROM generate_series(1, $1) g",
    )
    .bind(n)
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO conversation_entries (conversation_id, role, content) \
         SELECT c.id, 'user', 'entry ' || e FROM conversations c, generate_series(1, 4) e",
    )
    .execute(&pool)
    .await?;
    sqlx::query("INSERT INTO conversations (owner_id, title) SELECT 'live', 'keep' FROM generate_series(1, 1000)")
        .execute(&pool)
        .await?;
    sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
    checkpoint(&pool).await;
    let live_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM conversations WHERE deleted_at IS NULL")
            .fetch_one(&pool)
            .await?;

    // The writer alone before eviction: the baseline of earlier versions of this bench.
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(live_writer(pool.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(15)).await;
    stop.store(true, Ordering::Relaxed);
    let before = w.await??;
    let before_n = before.len();
    let before_p99 = p99(before.into_iter().map(|(_, ms)| ms).collect());

    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(live_writer(pool.clone(), stop.clone()));
    // Eviction runs as the daemon's handlers do, in a `memwarden-work` session; the writer
    // stands for the application and commits synchronously.
    let work = work_pool(&url).await?;
    let retention = RetentionPeriod::parse(Some("P30D"))?;
    let mut spans = Vec::new();
    let mut total = memwarden_jobs::eviction::EvictionReport::default();
    loop {
        // A window ends the way a drain does: the token stops eviction at a batch boundary,
        // and the next window's run takes up what is still due.
        let cancel = tokio_util::sync::CancellationToken::new();
        let timer = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                tokio::time::sleep(window).await;
                cancel.cancel();
            }
        });
        let from = Instant::now();
        let report = evict(
            &work,
            &retention,
            &[ResourceType::Conversations],
            false,
            &settings,
            &cancel,
            &memwarden_jobs::NoProgress,
        )
        .await?;
        timer.abort();
        spans.push(Span {
            from,
            to: Instant::now(),
            evicting: true,
        });
        total.conversations += report.conversations;
        total.conversation_entries += report.conversation_entries;
        total.batches += report.batches;
        total.batches_over_limit += report.batches_over_limit;
        total.longest_batch_ms = total.longest_batch_ms.max(report.longest_batch_ms);
        if !report.interrupted {
            break;
        }
        let from = Instant::now();
        tokio::time::sleep(window).await;
        spans.push(Span {
            from: from + SETTLE,
            to: Instant::now(),
            evicting: false,
        });
    }
    stop.store(true, Ordering::Relaxed);
    let ops = w.await??;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for (at, ms) in ops {
        match spans.iter().find(|s| s.from <= at && at < s.to) {
            Some(s) if s.evicting => with.push(ms),
            Some(_) => without.push(ms),
            None => {}
        }
    }
    let (with_n, without_n) = (with.len(), without.len());
    let (with_p99, without_p99) = (p99(with), p99(without));
    let live_after: i64 = sqlx::query_scalar("SELECT count(*) FROM conversations WHERE deleted_at IS NULL AND owner_id = 'live' AND title = 'keep'")
        .fetch_one(&pool)
        .await?;
    let rows = total.conversations + total.conversation_entries;
    let evicting_spans = || spans.iter().filter(|s| s.evicting);
    let windows = evicting_spans().count();
    let evicting: Duration = evicting_spans().map(|s| s.to - s.from).sum();
    println!(
        "memwarden evict N={n} conversations ({rows} rows) batch<={} pause={}ms limit={}ms: {:.0} rows/s ({:.2} s evicting, in {windows} windows of {} ms), {} batches, longest batch {:.1} ms, {} over the limit",
        settings.batch_size,
        settings.pause.as_millis(),
        settings.max_transaction.as_millis(),
        rows as f64 / evicting.as_secs_f64(),
        evicting.as_secs_f64(),
        window.as_millis(),
        total.batches,
        total.longest_batch_ms,
        total.batches_over_limit,
    );
    let ratio = if without_n == 0 || with_n == 0 {
        "n/a (eviction ended inside its first window)".to_string()
    } else {
        format!("{:.2}", with_p99 / without_p99.max(0.001))
    };
    println!(
        "live writer p99 ms: eviction stopped {without_p99:.2} ({without_n} ops), evicting {with_p99:.2} ({with_n} ops), ratio {ratio}; before eviction {before_p99:.2} ({before_n} ops)"
    );
    println!(
        "live conversations kept: {live_after} of 1000 (live before: {live_before}); rss_mb={:.1}",
        rss_mb()
    );
    work.close().await;
    pool.close().await;
    Ok(())
}
