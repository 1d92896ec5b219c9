//! Patterns (EXEMPLIFIES): what the memories of one type have in common.
//!
//! A pattern's id is derived from its memory type, so a memory's EXEMPLIFIES edge can be
//! written in the same statement that creates the pattern, without first reading its id.
//! Its terms come from a bounded sample of the type's most recent memories: recomputing them
//! over every memory of a popular type on each enrichment would make enrichment cost grow
//! with the store.

use std::collections::HashMap;

use uuid::Uuid;

use crate::text::words;

/// How many recent memories of a type the terms are drawn from (besides the one enriched).
pub const PATTERN_SAMPLE: usize = 25;

/// How many terms a pattern keeps.
pub const PATTERN_TERMS: usize = 5;

/// The namespace of pattern ids (UUIDv5 over the memory type).
const PATTERN_NAMESPACE: Uuid = Uuid::from_u128(0x5f0e_7c1a_3b9d_4e8f_a2c6_1d4b_8e9f_0a37);

/// The id of the pattern of `memory_type`: the same on every run and every replica.
pub fn pattern_id(memory_type: &str) -> Uuid {
    Uuid::new_v5(&PATTERN_NAMESPACE, memory_type.as_bytes())
}

/// A pattern's confidence after `observations` memories exemplified it: 0.35 for the first,
/// 0.05 more for each further one, at most 0.95. (The SQL upsert computes the same.)
pub fn pattern_confidence(observations: i32) -> f32 {
    (0.35 + 0.05 * (observations.max(1) - 1) as f32).min(0.95)
}

/// Common words of four or more letters that say nothing about a pattern.
const STOPWORDS: &[&str] = &[
    "about", "after", "again", "also", "because", "been", "before", "being", "both", "could",
    "does", "doing", "done", "each", "even", "every", "from", "have", "having", "here", "into",
    "just", "like", "made", "make", "many", "more", "most", "much", "must", "need", "only",
    "other", "over", "same", "should", "some", "such", "than", "that", "their", "them", "then",
    "there", "these", "they", "this", "those", "through", "under", "very", "want", "were", "what",
    "when", "where", "which", "while", "will", "with", "would", "your", "yours",
];

/// The `n` terms of four or more letters found in the most texts (ties alphabetically), so a
/// pattern names what its memories share rather than what one memory repeats.
pub fn top_terms<'a>(texts: impl IntoIterator<Item = &'a str>, n: usize) -> Vec<String> {
    let mut document_frequency: HashMap<String, usize> = HashMap::new();
    for text in texts {
        let mut seen: Vec<String> = words(text)
            .filter(|w| w.chars().count() >= 4 && w.chars().all(char::is_alphabetic))
            .filter(|w| !STOPWORDS.contains(&w.as_str()))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        for w in seen {
            *document_frequency.entry(w).or_default() += 1;
        }
    }
    let mut terms: Vec<(String, usize)> = document_frequency.into_iter().collect();
    terms.sort_by(|(a, fa), (b, fb)| fb.cmp(fa).then_with(|| a.cmp(b)));
    terms.into_iter().take(n).map(|(w, _)| w).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_shared_long_words() {
        let terms = top_terms(
            [
                "Prefer tabs over spaces in Rust code",
                "Prefer small commits; rust code reviews are faster",
                "Tabs again: prefer them in code 2024",
            ],
            5,
        );
        assert_eq!(terms, vec!["code", "prefer", "rust", "tabs", "commits"]);
        assert!(top_terms(["a an the of 1234"], 5).is_empty());
    }

    #[test]
    fn ids_and_confidence() {
        assert_eq!(pattern_id("Decision"), pattern_id("Decision"));
        assert_ne!(pattern_id("Decision"), pattern_id("Preference"));
        assert_eq!(pattern_confidence(1), 0.35);
        assert!((pattern_confidence(3) - 0.45).abs() < 1e-6);
        assert_eq!(pattern_confidence(100), 0.95);
    }
}
