//! Typed job arguments, River's `JobArgs`: a kind name plus a serde payload. Callers of the
//! domain enqueue typed args; the runtime stores them as the job's `args` JSON.

use serde::de::DeserializeOwned;
use serde::Serialize;

pub trait JobArgs: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The job kind these args belong to, e.g. `enrichment`.
    const KIND: &'static str;
}
