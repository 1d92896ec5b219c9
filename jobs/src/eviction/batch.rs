//! One batch of an eviction: what a store's statements for a resource type are, a transaction
//! that deletes up to a batch of rows and is cancelled past the time limit, and the sizing
//! that keeps batches inside it.

use std::time::Duration;

use sqlx::PgPool;

use super::release::{free_and_commit, Release, Touched};
use super::EvictionSettings;

/// Rows to evict at the start, and the conversations among them.
pub(super) async fn count_due(
    pool: &PgPool,
    statements: &Statements,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(&statements.count)
        .bind(cutoff)
        .fetch_one(pool)
        .await
}

/// What eviction runs for one resource type of one store.
pub(super) struct Statements {
    /// `$1` the cutoff: the rows due (the progress bar's weight), and the conversations among
    /// them (for a dry run's report).
    pub(super) count: String,
    /// `$1` cutoff, `$2` size, `$3` cursor: reads, without locks, what the batch will delete.
    pub(super) warm: String,
    /// The same parameters; columns: candidates seen, the cursor for the next batch, rows,
    /// conversations, entries, attachments, and the keys (with bytes) it let go of.
    pub(super) batch: String,
    /// Rows are conversation groups, each of some conversations (Memory Service).
    pub(super) grouped: bool,
    pub(super) release: Release,
}

/// SQLSTATE of a statement cancelled by `statement_timeout`.
pub(super) const QUERY_CANCELED: &str = "57014";

/// How often a one-row batch may hit the limit in a row before eviction gives up.
pub(super) const OVERRUNS_ALLOWED: u32 = 5;

type BatchRow = (
    i64,
    Option<chrono::DateTime<chrono::Utc>>,
    i64,
    i64,
    i64,
    i64,
    Vec<String>,
    Vec<i64>,
);

/// What one batch did.
pub(super) struct Batch {
    /// Candidates read; fewer than asked means the last due row has been reached.
    pub(super) seen: i64,
    pub(super) cursor: Option<chrono::DateTime<chrono::Utc>>,
    pub(super) rows: i64,
    pub(super) conversations: i64,
    pub(super) entries: i64,
    pub(super) attachments: i64,
    pub(super) freed: Vec<(String, i64)>,
}

/// One batch in one transaction, under a `statement_timeout` of `max_transaction`: on timeout
/// PostgreSQL cancels it and everything in it rolls back.
pub(super) async fn run_batch(
    pool: &PgPool,
    statements: &Statements,
    cutoff: chrono::DateTime<chrono::Utc>,
    size: i64,
    cursor: Option<chrono::DateTime<chrono::Utc>>,
    settings: &EvictionSettings,
) -> Result<Batch, sqlx::Error> {
    // The batch statements keep the session's cached plans: planned anew on every batch they
    // halved the rate. A plan made at the start of a run, when the tables are at their
    // largest, stays right as they shrink.
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('statement_timeout', $1, true)")
        .bind(format!("{}ms", settings.max_transaction.as_millis().max(1)))
        .execute(&mut *tx)
        .await?;
    let (seen, cursor, rows, conversations, entries, attachments, keys, sizes): BatchRow =
        sqlx::query_as(&statements.batch)
            .bind(cutoff)
            .bind(size)
            .bind(cursor)
            .fetch_one(&mut *tx)
            .await?;
    let freed = free_and_commit(tx, &statements.release, &Touched { keys, sizes }).await?;
    Ok(Batch {
        seen,
        cursor,
        rows,
        conversations,
        entries,
        attachments,
        freed,
    })
}

/// Sizes batches to a time budget of a quarter of the transaction limit, so that a batch that
/// meets a checkpoint or a slow disk still finishes inside the limit. It halves after a batch
/// over budget, grows by a quarter after one under half of it, and never exceeds the ceiling.
pub(super) struct BatchSizer {
    size: i64,
    ceiling: i64,
    budget: Duration,
    overruns_in_a_row: u32,
}

impl BatchSizer {
    pub(super) fn new(ceiling: i64, limit: Duration) -> Self {
        let ceiling = ceiling.max(1);
        BatchSizer {
            // Starts small and grows, rather than learning the budget from an overrun.
            size: (ceiling / 8).max(1),
            ceiling,
            budget: limit / 4,
            overruns_in_a_row: 0,
        }
    }

    pub(super) fn size(&self) -> i64 {
        self.size
    }

    pub(super) fn record(&mut self, took: Duration) {
        self.overruns_in_a_row = 0;
        if took > self.budget {
            self.size = (self.size / 2).max(1);
        } else if took < self.budget / 2 {
            self.size = (self.size + self.size / 4 + 1).min(self.ceiling);
        }
    }

    /// After a batch cancelled at the limit: a quarter of the rows next time. False once a
    /// one-row batch has overrun `OVERRUNS_ALLOWED` times in a row.
    pub(super) fn overran(&mut self) -> bool {
        if self.size == 1 {
            self.overruns_in_a_row += 1;
        }
        self.size = (self.size / 4).max(1);
        self.overruns_in_a_row < OVERRUNS_ALLOWED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_shrink_over_budget_grow_under_it_and_give_up_at_one_row() {
        let mut sizer = BatchSizer::new(800, Duration::from_millis(100));
        assert_eq!(sizer.size(), 100, "starts at an eighth of the ceiling");
        sizer.record(Duration::from_millis(30));
        assert_eq!(sizer.size(), 50, "over the 25 ms budget: halved");
        sizer.record(Duration::from_millis(20));
        assert_eq!(sizer.size(), 50, "within the budget: kept");
        for _ in 0..30 {
            sizer.record(Duration::from_millis(5));
        }
        assert_eq!(sizer.size(), 800, "grows, never past the ceiling");
        assert!(sizer.overran());
        assert_eq!(sizer.size(), 200, "an overrun quarters it");
        while sizer.size() > 1 {
            assert!(sizer.overran());
        }
        for _ in 1..OVERRUNS_ALLOWED {
            assert!(sizer.overran());
        }
        assert!(!sizer.overran(), "one row over the limit, again and again");
        sizer.record(Duration::from_millis(1));
        assert!(sizer.overran(), "a batch that fits resets the streak");
    }
}
