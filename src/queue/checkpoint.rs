//! Where a resumable job keeps its state between attempts: the job row's `checkpoint`,
//! written only while this worker holds the job's lease.

use memwarden_jobs::{Checkpoint, CheckpointError};
use uuid::Uuid;

use super::Queue;

/// The job row's `checkpoint`, written only while this worker holds the job's lease.
#[derive(Clone)]
pub struct JobCheckpoint {
    pub(super) queue: Queue,
    pub(super) job: Uuid,
}

#[async_trait::async_trait]
impl Checkpoint for JobCheckpoint {
    async fn load(&self) -> Result<Option<serde_json::Value>, CheckpointError> {
        Ok(
            sqlx::query_scalar("SELECT checkpoint FROM jobs WHERE id = $1")
                .bind(self.job)
                .fetch_optional(self.queue.pool())
                .await?
                .flatten(),
        )
    }

    async fn save(&self, state: &serde_json::Value) -> Result<(), CheckpointError> {
        let saved = sqlx::query(
            "UPDATE jobs SET checkpoint = $2 \
             WHERE id = $1 AND lease_owner = $3 AND status = 'running'",
        )
        .bind(self.job)
        .bind(state)
        .bind(self.queue.worker_id())
        .execute(self.queue.pool())
        .await?;
        if saved.rows_affected() == 0 {
            return Err(CheckpointError::LeaseLost);
        }
        Ok(())
    }
}
