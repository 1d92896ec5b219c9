//! The offline embedder: feature hashing of word unigrams and bigrams.
//!
//! Each normalised word, and each pair of adjacent words, is hashed into one of `dims`
//! buckets with a sign taken from another bit of the same hash (so that collisions cancel
//! out on average instead of piling up), and the vector is L2-normalised. Texts that share
//! words share buckets, so their cosine is high; it needs no network and no model files, and
//! the same text gives the same vector on every machine and in every release of `hash-v1`.

use async_trait::async_trait;

use super::{count_inputs, count_request, EmbedError, Embedder};
use crate::text::words;

/// The default dimension count, the size of the small sentence-transformer models.
pub const DEFAULT_DIMS: usize = 384;

/// Bigrams weigh less than words: they add word order without drowning out the vocabulary.
const BIGRAM_WEIGHT: f32 = 0.5;

/// Deterministic, offline feature-hashing embedder (`provider = "hash"`, `model = "hash-v1"`).
#[derive(Debug, Clone)]
pub struct HashEmbedder {
    dims: usize,
}

impl HashEmbedder {
    /// The size when none is configured.
    pub const DEFAULT_DIMS: usize = 384;

    /// An embedder of `dims` dimensions (at least 1).
    pub fn new(dims: usize) -> Self {
        HashEmbedder { dims: dims.max(1) }
    }

    /// The vector of one text: synchronous and allocation-light, for bulk callers.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; self.dims];
        let mut previous: Option<String> = None;
        for word in words(text) {
            self.add(&mut v, finish(fnv1a(seeded(b'u'), word.as_bytes())), 1.0);
            if let Some(prev) = &previous {
                let h = fnv1a(fnv1a(seeded(b'b'), prev.as_bytes()), word.as_bytes());
                self.add(&mut v, finish(h), BIGRAM_WEIGHT);
            }
            previous = Some(word);
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }

    fn add(&self, v: &mut [f32], hash: u64, weight: f32) {
        // Bucket from the low bits, sign from the top bit: independent enough for hashing.
        let bucket = (hash % self.dims as u64) as usize;
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        v[bucket] += sign * weight;
    }
}

impl Default for HashEmbedder {
    fn default() -> Self {
        HashEmbedder::new(DEFAULT_DIMS)
    }
}

#[async_trait]
impl Embedder for HashEmbedder {
    fn provider(&self) -> &str {
        "hash"
    }

    fn model(&self) -> &str {
        "hash-v1"
    }

    fn dims(&self) -> usize {
        self.dims
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let vectors: Vec<Vec<f32>> = texts.iter().map(|t| self.embed_one(t)).collect();
        count_request("hash", "ok");
        count_inputs("hash", texts.len());
        Ok(vectors)
    }
}

/// 64-bit FNV-1a, written out here because stored vectors must not change with a dependency's
/// version. Each feature kind starts from its own seed, so a word and a bigram never collide
/// by construction; the separator byte keeps ("ab", "c") and ("a", "bc") apart.
fn seeded(kind: u8) -> u64 {
    fnv1a(0xcbf2_9ce4_8422_2325, &[kind])
}

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes.iter().chain(std::iter::once(&0xff)) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// FNV's low bits mix poorly for short keys, and the bucket comes from the low bits: a final
/// avalanche (splitmix64's) spreads every input bit over the whole word.
fn finish(mut h: u64) -> u64 {
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedding::cosine;

    #[test]
    fn deterministic_and_normalised() {
        let e = HashEmbedder::new(384);
        let a = e.embed_one("PostgreSQL stores the memories; Rust does the work.");
        let b = e.embed_one("PostgreSQL stores the memories; Rust does the work.");
        assert_eq!(a, b);
        assert_eq!(a.len(), 384);
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        // Pinned: stored vectors must not change between releases of hash-v1.
        let pinned = HashEmbedder::new(8).embed_one("hello world");
        let (two, one) = (2.0 / 3.0, 1.0 / 3.0);
        assert_eq!(pinned, vec![0.0, -two, 0.0, one, 0.0, 0.0, 0.0, two]);
        let again = HashEmbedder::new(8).embed_one("Hello, WORLD!");
        assert_eq!(
            pinned, again,
            "normalisation: case and punctuation do not matter"
        );
    }

    #[test]
    fn shared_words_are_near_and_different_texts_far() {
        let e = HashEmbedder::default();
        let a = e.embed_one("the deploy pipeline uses kubernetes and helm charts for staging");
        let b = e.embed_one("the deploy pipeline uses kubernetes and helm charts for production");
        let c = e.embed_one("grandma's lasagna recipe needs ricotta, basil and fresh tomatoes");
        let near = cosine(&a, &b);
        let far = cosine(&a, &c);
        assert!(near > 0.8, "near {near}");
        assert!(far < 0.3, "far {far}");
    }

    #[test]
    fn empty_text_is_zero_vector() {
        let v = HashEmbedder::new(16).embed_one("  ... ");
        assert!(v.iter().all(|x| *x == 0.0));
    }

    #[tokio::test]
    async fn trait_embeds_in_order() {
        let e = HashEmbedder::new(32);
        let texts = vec!["one".to_string(), "two".to_string()];
        let out = e.embed(&texts).await.unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], e.embed_one("one"));
        assert_eq!(out[1], e.embed_one("two"));
        assert_eq!(e.model(), "hash-v1");
        assert_eq!(e.dims(), 32);
    }
}
