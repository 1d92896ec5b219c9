//! Coalescing the embeddings of concurrent callers into batched provider requests.
//! Enrichment embeds one memory at a time, so a remote provider would see one request per
//! memory: 100 ms apiece and 3,000 requests a minute cap enrichment at 50 memories/s whatever
//! the concurrency. Here the texts of callers that arrive together go in one request (up to
//! the provider's input limit, waiting at most `max_wait` after the first), paced to the
//! requests-per-minute and tokens-per-minute limits, and each caller gets its own vectors.
//!
//! Failures stay each caller's own: when a batch fails for a reason that may be one input's
//! (a 4xx, a malformed answer), its callers' texts are sent again one caller at a time. A
//! rate limit, an outage or an exhausted quota is every caller's, and is answered to all; a
//! `Retry-After` also holds back the batches that follow.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, Mutex, Semaphore};
use tokio::time::Instant;

use super::pacer::Pacer;
use super::{EmbedError, Embedder};

/// Histogram of the inputs per coalesced request.
pub const COALESCED_INPUTS: &str = "memwarden_embedding_coalesced_inputs";

#[derive(Debug, Clone)]
pub struct CoalesceSettings {
    /// The most texts in one request (OpenAI's limit is 2048).
    pub max_inputs: usize,
    /// How long the first text of a batch waits for others.
    pub max_wait: Duration,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    pub requests_per_minute: Option<u32>,
    /// Estimated at 4 characters a token, as the OpenAI embedder splits batches.
    pub tokens_per_minute: Option<u32>,
}

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>;

struct Pending {
    texts: Vec<String>,
    reply: Reply,
}

/// An [`Embedder`] that batches the calls of concurrent callers into requests to `inner`.
pub struct CoalescingEmbedder {
    inner: Arc<dyn Embedder>,
    tx: mpsc::Sender<Pending>,
}

impl CoalescingEmbedder {
    /// Starts the batching task on the current tokio runtime; it ends when this is dropped.
    pub fn new(inner: Arc<dyn Embedder>, settings: CoalesceSettings) -> Self {
        let (tx, rx) = mpsc::channel(settings.max_inputs.max(1) * 4);
        tokio::spawn(collect(
            inner.clone(),
            rx,
            Arc::new(Limits::new(&settings)),
            settings,
        ));
        CoalescingEmbedder { inner, tx }
    }
}

#[async_trait]
impl Embedder for CoalescingEmbedder {
    fn provider(&self) -> &str {
        self.inner.provider()
    }

    fn model(&self) -> &str {
        self.inner.model()
    }

    fn dims(&self) -> usize {
        self.inner.dims()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let stopped = || EmbedError::Transient("the embedding batcher has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending {
                texts: texts.to_vec(),
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The provider's limits, shared by every batch in flight.
struct Limits {
    requests: Option<Pacer>,
    tokens: Option<Pacer>,
    /// No request before this, after a `Retry-After`.
    not_before: Mutex<Option<Instant>>,
}

impl Limits {
    fn new(s: &CoalesceSettings) -> Self {
        Limits {
            requests: s.requests_per_minute.map(Pacer::new),
            tokens: s.tokens_per_minute.map(Pacer::new),
            not_before: Mutex::new(None),
        }
    }

    async fn wait(&self, texts: &[String]) {
        let hold = *self.not_before.lock().await;
        if let Some(at) = hold {
            tokio::time::sleep_until(at).await;
        }
        if let Some(p) = &self.requests {
            p.wait().await;
        }
        if let Some(p) = &self.tokens {
            let chars: usize = texts.iter().map(|t| t.chars().count()).sum();
            p.wait_n(u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX))
                .await;
        }
    }

    async fn hold_for(&self, error: &EmbedError) {
        if let Some(wait) = error.retry_after() {
            let until = Instant::now() + wait;
            let mut at = self.not_before.lock().await;
            *at = Some(at.map_or(until, |t| t.max(until)));
        }
    }
}

async fn collect(
    inner: Arc<dyn Embedder>,
    mut rx: mpsc::Receiver<Pending>,
    limits: Arc<Limits>,
    settings: CoalesceSettings,
) {
    let slots = Arc::new(Semaphore::new(settings.max_in_flight.max(1)));
    while let Some(first) = rx.recv().await {
        let deadline = Instant::now() + settings.max_wait;
        // Waiting for a free slot first lets the batch grow while every slot is busy.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut inputs = first.texts.len();
        let mut batch = vec![first];
        while inputs < settings.max_inputs {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => {
                    inputs += p.texts.len();
                    batch.push(p);
                }
                Ok(None) | Err(_) => break,
            }
        }
        metrics::histogram!(COALESCED_INPUTS).record(inputs as f64);
        let (inner, limits) = (inner.clone(), limits.clone());
        tokio::spawn(async move {
            send(inner.as_ref(), &limits, batch).await;
            drop(slot);
        });
    }
}

/// One request for the whole batch; on a failure that may be one input's, one per caller.
async fn send(inner: &dyn Embedder, limits: &Limits, batch: Vec<Pending>) {
    let texts: Vec<String> = batch.iter().flat_map(|p| p.texts.iter().cloned()).collect();
    limits.wait(&texts).await;
    match inner.embed(&texts).await {
        Ok(mut vectors) => {
            for p in batch {
                let rest = vectors.split_off(p.texts.len().min(vectors.len()));
                let _ = p.reply.send(Ok(std::mem::replace(&mut vectors, rest)));
            }
        }
        Err(e) if batch.len() == 1 || shared(&e) => {
            limits.hold_for(&e).await;
            for p in batch {
                let _ = p.reply.send(Err(e.clone()));
            }
        }
        Err(_) => {
            for p in batch {
                limits.wait(&p.texts).await;
                let alone = inner.embed(&p.texts).await;
                if let Err(e) = &alone {
                    limits.hold_for(e).await;
                }
                let _ = p.reply.send(alone);
            }
        }
    }
}

/// Whether a failure is the provider's rather than an input's.
fn shared(e: &EmbedError) -> bool {
    matches!(
        e,
        EmbedError::RateLimited { .. } | EmbedError::Transient(_) | EmbedError::QuotaExceeded(_)
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Records each request's size; refuses any request that contains "bad".
    struct Recording {
        requests: std::sync::Mutex<Vec<usize>>,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl Embedder for Recording {
        fn provider(&self) -> &str {
            "recording"
        }
        fn model(&self) -> &str {
            "m"
        }
        fn dims(&self) -> usize {
            1
        }
        async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.requests.lock().unwrap().push(texts.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
            if texts.iter().any(|t| t == "bad") {
                return Err(EmbedError::Permanent("input 'bad' refused".into()));
            }
            Ok(texts.iter().map(|t| vec![t.len() as f32]).collect())
        }
    }

    fn settings() -> CoalesceSettings {
        CoalesceSettings {
            max_inputs: 64,
            max_wait: Duration::from_millis(5),
            max_in_flight: 2,
            requests_per_minute: None,
            tokens_per_minute: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_requests_and_each_gets_its_own_vectors() {
        let inner = Arc::new(Recording {
            requests: Default::default(),
            calls: AtomicUsize::new(0),
        });
        let c = Arc::new(CoalescingEmbedder::new(inner.clone(), settings()));
        let callers: Vec<_> = (0..200)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move { c.embed(&["x".repeat(i % 7 + 1)]).await })
            })
            .collect();
        for (i, h) in callers.into_iter().enumerate() {
            assert_eq!(h.await.unwrap().unwrap(), vec![vec![(i % 7 + 1) as f32]]);
        }
        let requests = inner.requests.lock().unwrap().clone();
        assert!(
            requests.len() <= 5,
            "200 texts in few requests: {requests:?}"
        );
        assert!(requests.iter().all(|n| *n <= 64), "{requests:?}");
        assert_eq!(requests.iter().sum::<usize>(), 200);
    }

    #[tokio::test(start_paused = true)]
    async fn one_bad_input_fails_only_its_caller() {
        let inner = Arc::new(Recording {
            requests: Default::default(),
            calls: AtomicUsize::new(0),
        });
        let c = Arc::new(CoalescingEmbedder::new(inner.clone(), settings()));
        let texts = ["a", "bad", "ccc"];
        let callers: Vec<_> = texts
            .iter()
            .map(|t| {
                let (c, t) = (c.clone(), t.to_string());
                tokio::spawn(async move { c.embed(&[t]).await })
            })
            .collect();
        let results: Vec<_> = futures::future::join_all(callers).await;
        let results: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(results[0].as_ref().unwrap(), &vec![vec![1.0]]);
        assert!(matches!(results[1], Err(EmbedError::Permanent(_))));
        assert_eq!(results[2].as_ref().unwrap(), &vec![vec![3.0]]);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_are_paced_to_the_per_minute_limit() {
        let inner = Arc::new(Recording {
            requests: Default::default(),
            calls: AtomicUsize::new(0),
        });
        let mut s = settings();
        s.max_inputs = 1;
        s.max_in_flight = 8;
        s.requests_per_minute = Some(600); // one per 100 ms
        let c = Arc::new(CoalescingEmbedder::new(inner.clone(), s));
        let start = Instant::now();
        let callers: Vec<_> = (0..5)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.embed(&["t".into()]).await })
            })
            .collect();
        for h in callers {
            h.await.unwrap().unwrap();
        }
        // Five one-input requests start 100 ms apart, and the last takes 100 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        assert_eq!(inner.calls.load(Ordering::SeqCst), 5);
    }
}
