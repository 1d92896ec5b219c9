//! Every loop of the queue, in start order, for the supervisor.

use std::sync::Arc;

use super::claimer::Claimer;
use super::completer::Completer;
use super::cron::Cron;
use super::depth::Depth;
use super::heartbeat::Heartbeat;
use super::listener::Listener;
use super::periodic::Every;
use super::progress_writer::ProgressWriter;
use super::reaper::Reaper;
use super::Queue;
use crate::supervisor::Service;

impl Queue {
    /// The completer comes first so that it stops last, after every claimer has handed in its
    /// work. Reads the paused queues and writes the configured schedules first, so that no
    /// claimer starts on a paused queue and `/v1/schedules` is current once READY.
    pub async fn services(&self) -> Result<Vec<Arc<dyn Service>>, sqlx::Error> {
        self.refresh_paused().await?;
        super::cron::sync_schedules(self).await?;
        let health = self.health().clone();
        let mut services: Vec<Arc<dyn Service>> = vec![
            Arc::new(Completer::new(self.clone())),
            Arc::new(ProgressWriter(self.clone())),
            Arc::new(Listener::new(self.clone())),
            Arc::new(Every::new(Heartbeat::new(self.clone()), health.clone())),
            Arc::new(Every::new(Reaper::new(self.clone()), health.clone())),
            Arc::new(Every::new(Depth::new(self.clone()), health)),
            Arc::new(Cron::new(self.clone())),
        ];
        for name in self.served_queues() {
            services.push(Arc::new(Claimer::new(self.clone(), name)));
        }
        Ok(services)
    }
}
