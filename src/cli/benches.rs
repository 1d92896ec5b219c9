//! `memwarden bench ...`: the benchmarks (`crate::bench`), logging only warnings so that their
//! figures stand out.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;

use super::Cli;

/// How the eviction benches size and pace their batches.
#[derive(Debug, clap::Args)]
pub struct EvictionBatches {
    /// Conversations per batch at most. Short batches keep the live writer's p99 lower at no
    /// cost in rate (docs/performance.md, "Eviction").
    #[arg(long, default_value_t = 100)]
    batch_size: i64,
    #[arg(long, default_value_t = 1)]
    pause_ms: u64,
    /// The transaction limit that batches are sized to stay inside (at least 10, as in
    /// `eviction.max_transaction_ms`).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..))]
    max_transaction_ms: u64,
}

impl EvictionBatches {
    /// memwarden's own store's settings; the Memory Service bench sets its store on a copy.
    fn settings(&self) -> Result<memwarden_jobs::eviction::EvictionSettings> {
        if self.batch_size < 1 {
            anyhow::bail!("--batch-size must be at least 1");
        }
        Ok(memwarden_jobs::eviction::EvictionSettings {
            batch_size: self.batch_size,
            pause: Duration::from_millis(self.pause_ms),
            max_transaction: Duration::from_millis(self.max_transaction_ms),
            blobs_dir: std::env::temp_dir(),
            store: Default::default(),
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Enrichment of N memories over some owners, inserted with plain SQL.
    Enrich {
        #[arg(long, default_value_t = 10_000)]
        memories: i64,
        #[arg(long, default_value_t = 100)]
        owners: i64,
        #[arg(long, default_value_t = 8)]
        concurrency: u32,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Enrichment against an OpenAI-compatible provider with a fixed latency and a
    /// requests-per-minute limit (served in-process), one request per memory and coalesced,
    /// side by side.
    EnrichRemote {
        #[arg(long, default_value_t = 3_000)]
        memories: i64,
        #[arg(long, default_value_t = 100)]
        owners: i64,
        #[arg(long, default_value_t = 128)]
        concurrency: u32,
        /// Milliseconds the provider takes per request.
        #[arg(long, default_value_t = 100)]
        latency_ms: u64,
        /// The provider's requests-per-minute limit (429 above it).
        #[arg(long, default_value_t = 3_000)]
        rpm: u32,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Replicas on one database: aggregate throughput of N jobs, and the rescue of a crashed
    /// replica's expired leases, for each replica count.
    Replicas {
        #[arg(long, default_value_t = 100_000)]
        jobs: usize,
        /// Workers per replica.
        #[arg(long, default_value_t = 24)]
        concurrency: u32,
        /// Replica counts to run, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2, 4])]
        replicas: Vec<usize>,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Reembed of N memories with the configured embedder (hash by default), end to end
    /// through the daemon's queue.
    Reembed {
        #[arg(long, default_value_t = 100_000)]
        memories: i64,
        #[arg(long, default_value_t = 32)]
        batch_size: u32,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// The memory store at each size, on arrays and on pgvector side by side: enrichment
    /// rate, the neighbour query's p50/p99 for an owner of a tenth of the store and for small
    /// owners, the sync scan with and without the content hashed in it.
    Store {
        /// Store sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [10_000i64, 100_000, 1_000_000])]
        sizes: Vec<i64>,
        /// New memories of the large owner enriched on each backend.
        #[arg(long, default_value_t = 1000)]
        enrich: i64,
        /// Seconds enrichment may take on each backend before it is cut short.
        #[arg(long, default_value_t = 60)]
        enrich_seconds: u64,
        #[arg(long, default_value_t = 500)]
        queries: usize,
        /// Seconds the neighbour queries may take on each backend.
        #[arg(long, default_value_t = 30)]
        query_seconds: u64,
        #[arg(long, default_value_t = 8)]
        concurrency: u32,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Sync of N memories: a dry-run scan of drift (DRIFT missing, stale and orphaned), then
    /// the repair.
    Sync {
        #[arg(long, default_value_t = 100_000)]
        memories: i64,
        #[arg(long, default_value_t = 100)]
        drift: i64,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Eviction of N soft-deleted conversations (4 entries each) beside a live writer.
    Evict {
        #[arg(long, default_value_t = 500_000)]
        conversations: i64,
        #[command(flatten)]
        batches: EvictionBatches,
        /// Eviction runs for this long, then stops for as long, and so on: the writer's p99
        /// with and without eviction comes from alternating windows of the same run.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(500..))]
        window_ms: u64,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Eviction of N entries from memwarden's store and from a Memory Service database (needs
    /// pgvector), one after the other in one database: entries/s and the longest batch of each.
    EvictStores {
        #[arg(long, default_value_t = 500_000)]
        entries: i64,
        /// The size of the embeddings on Memory Service's entries.
        #[arg(long, default_value_t = 32)]
        dims: usize,
        /// Index `entry_embeddings (conversation_id)` first, as Memory Service's schema does not.
        #[arg(long)]
        conversation_index: bool,
        #[command(flatten)]
        batches: EvictionBatches,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// job-purge of N succeeded jobs with their attempts (as `queue --history` writes them),
    /// twice: jobs/s, to compare with the queue's throughput.
    Purge {
        #[arg(long, default_value_t = 2_000_000)]
        jobs: i64,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Memory configurations: N conversations over a hybrid_summary limit flushed with the
    /// offline summariser (conversations/s), then the privacy policy re-applied (per entry),
    /// then entries written with and without redaction by the running daemon (entries/s).
    Memory {
        /// Conversations flushed (0 leaves the flush and the re-application out).
        #[arg(long, default_value_t = 10_000)]
        conversations: i64,
        /// Flushes at once, and the daemon's worker concurrency on the write path.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Conversations written on the write path (0 leaves it out).
        #[arg(long, default_value_t = 10_000)]
        write_conversations: i64,
        /// Entries written into each of them.
        #[arg(long, default_value_t = 3)]
        write_entries: i32,
        /// Connections writing at once.
        #[arg(long, default_value_t = 8)]
        writers: usize,
        /// One INSERT per entry, instead of one per conversation.
        #[arg(long)]
        one_entry_per_write: bool,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Queue throughput and enqueue-to-start latency, against DATABASE_URL.
    Queue {
        #[arg(long, default_value_t = 20000)]
        jobs: usize,
        #[arg(long, default_value_t = 24)]
        concurrency: u32,
        /// Latency samples (at least 1).
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
        samples: u64,
        /// Succeeded jobs (with their attempt rows) already in the table.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
        history: i64,
        /// Pending jobs of the same queue, due in an hour, already in the table.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
        backlog: i64,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
}

pub async fn run(cli: &Cli, cmd: &BenchCommand) -> Result<ExitCode> {
    memwarden::telemetry::init_logging(cli.log_format, "warn");
    match cmd {
        BenchCommand::Queue {
            jobs,
            concurrency,
            samples,
            history,
            backlog,
            database_url,
        } => {
            let prefill = crate::bench::Prefill {
                history: *history,
                backlog: *backlog,
            };
            crate::bench::queue(
                database_url,
                *jobs,
                *concurrency,
                *samples as usize,
                prefill,
            )
            .await?
        }
        BenchCommand::Enrich {
            memories,
            owners,
            concurrency,
            database_url,
        } => crate::bench::enrich(database_url, *memories, *owners, *concurrency).await?,
        BenchCommand::Replicas {
            jobs,
            concurrency,
            replicas,
            database_url,
        } => {
            if replicas.iter().any(|k| *k < 1) || *concurrency < 1 {
                anyhow::bail!("--replicas and --concurrency must be at least 1");
            }
            crate::bench::replicas(database_url, *jobs, *concurrency, replicas).await?
        }
        BenchCommand::EnrichRemote {
            memories,
            owners,
            concurrency,
            latency_ms,
            rpm,
            database_url,
        } => {
            if *rpm < 1 || *concurrency < 1 {
                anyhow::bail!("--rpm and --concurrency must be at least 1");
            }
            crate::bench::enrich_remote(
                database_url,
                *memories,
                *owners,
                *concurrency,
                Duration::from_millis(*latency_ms),
                *rpm,
            )
            .await?
        }
        BenchCommand::Evict {
            conversations,
            batches,
            window_ms,
            database_url,
        } => {
            let settings = batches.settings()?;
            let window = Duration::from_millis(*window_ms);
            crate::bench::evict(database_url, *conversations, settings, window).await?
        }
        BenchCommand::Purge { jobs, database_url } => {
            if *jobs < 1 {
                anyhow::bail!("--jobs must be at least 1");
            }
            crate::bench::purge_bench(database_url, *jobs).await?
        }
        BenchCommand::EvictStores {
            entries,
            dims,
            conversation_index,
            batches,
            database_url,
        } => {
            if *entries < 4 || *dims < 1 {
                anyhow::bail!("--entries must be at least 4, --dims at least 1");
            }
            let settings = batches.settings()?;
            let fill = crate::bench::MemoryServiceFill {
                entries: *entries,
                dims: *dims,
                conversation_index: *conversation_index,
            };
            crate::bench::evict_stores(database_url, fill, settings).await?
        }
        BenchCommand::Reembed {
            memories,
            batch_size,
            database_url,
        } => crate::bench::reembed(database_url, *memories, *batch_size).await?,
        BenchCommand::Store {
            sizes,
            enrich,
            enrich_seconds,
            queries,
            query_seconds,
            concurrency,
            database_url,
        } => {
            if sizes.iter().any(|s| *s < 100) {
                anyhow::bail!("--sizes: each size must be at least 100 memories");
            }
            if *enrich < 1 || *queries < 1 || *concurrency < 1 {
                anyhow::bail!("--enrich, --queries and --concurrency must be at least 1");
            }
            let bench = crate::bench::StoreBench {
                sizes: sizes.clone(),
                enrich: *enrich,
                enrich_limit: Duration::from_secs(*enrich_seconds),
                queries: *queries,
                query_limit: Duration::from_secs(*query_seconds),
                concurrency: *concurrency,
            };
            crate::bench::store(database_url, bench).await?
        }
        BenchCommand::Sync {
            memories,
            drift,
            database_url,
        } => crate::bench::sync(database_url, *memories, *drift).await?,
        BenchCommand::Memory {
            conversations,
            concurrency,
            write_conversations,
            write_entries,
            writers,
            one_entry_per_write,
            database_url,
        } => {
            let write = crate::bench::WriteLoad {
                conversations: *write_conversations,
                entries: *write_entries,
                writers: *writers,
                one_entry_per_write: *one_entry_per_write,
            };
            crate::bench::memory(database_url, *conversations, *concurrency, write).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}
