//! What AutoMem's clients read of an enrichment (automem/enrichment/runtime_orchestration.py):
//! `metadata.entities` as `{category: [values]}`, `metadata.enrichment` with what the run
//! found, and a one-sentence `summary`. The store's generated columns give the rest
//! (`tag_prefixes`, `enriched`, `processed`; migration 0008).

use std::collections::BTreeMap;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::extraction::Entity;

/// The longest summary, in characters, as AutoMem's `generate_summary` cuts it.
pub const SUMMARY_MAX_CHARS: usize = 240;

/// `metadata.entities`: each category (plural, as in the tags) with its values, sorted.
pub fn entities_metadata(entities: &[Entity]) -> Value {
    let mut by_category: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in entities {
        by_category
            .entry(e.category.plural())
            .or_default()
            .push(e.value.as_str());
    }
    for values in by_category.values_mut() {
        values.sort_unstable();
        values.dedup();
    }
    json!(by_category)
}

/// A pattern the memory was linked to, as `patterns_detected` lists it.
pub struct DetectedPattern<'a> {
    pub memory_type: &'a str,
    /// The other memories of the type the pattern was judged over.
    pub similar_memories: usize,
    pub key_terms: &'a [String],
}

/// `metadata.enrichment` without `last_run`, which the write stamps with the database's clock.
pub fn enrichment_metadata(
    forced: bool,
    temporal_links: usize,
    pattern: Option<DetectedPattern<'_>>,
    neighbours: impl Iterator<Item = (Uuid, f32)>,
) -> Value {
    let patterns: Vec<Value> = pattern
        .into_iter()
        .map(|p| {
            json!({
                "type": p.memory_type,
                "similar_memories": p.similar_memories,
                "key_terms": p.key_terms,
            })
        })
        .collect();
    let neighbours: Vec<Value> = neighbours
        .map(|(id, score)| json!({"id": id, "score": score}))
        .collect();
    json!({
        "forced": forced,
        "temporal_links": temporal_links,
        "patterns_detected": patterns,
        "semantic_neighbors": neighbours,
    })
}

/// The first sentence of the content, cut at a word boundary to [`SUMMARY_MAX_CHARS`]; `None`
/// for blank content.
pub fn summary(content: &str) -> Option<String> {
    let text = content.trim();
    let first = first_sentence(text).trim();
    if first.is_empty() {
        return None;
    }
    if first.chars().count() <= SUMMARY_MAX_CHARS {
        return Some(first.to_string());
    }
    let cut: String = first.chars().take(SUMMARY_MAX_CHARS).collect();
    let at_word = match cut.rsplit_once(' ') {
        Some((head, _)) if !head.trim().is_empty() => head.trim(),
        _ => cut.trim(),
    };
    Some(at_word.to_string())
}

/// Up to the first `.`, `!` or `?` that whitespace follows (AutoMem splits on
/// `(?<=[.!?])\s+`).
fn first_sentence(text: &str) -> &str {
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '.' | '!' | '?') {
            if let Some(&(_, next)) = chars.peek() {
                if next.is_whitespace() {
                    return &text[..i + c.len_utf8()];
                }
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extraction::Category;

    #[test]
    fn entities_group_by_plural_category_sorted() {
        let entities = [
            Entity::new(Category::Tool, "Postgres"),
            Entity::new(Category::Person, "Grace Hopper"),
            Entity::new(Category::Tool, "Kafka"),
        ];
        assert_eq!(
            entities_metadata(&entities),
            json!({"people": ["Grace Hopper"], "tools": ["Kafka", "Postgres"]})
        );
        assert_eq!(entities[1].tag(), "entity:people:grace-hopper");
    }

    #[test]
    fn summary_is_the_first_sentence_cut_at_a_word() {
        assert_eq!(
            summary("Chose Postgres. It was faster.").as_deref(),
            Some("Chose Postgres.")
        );
        assert_eq!(summary("v1.2 is out").as_deref(), Some("v1.2 is out"));
        assert_eq!(summary("   "), None);
        let long = "word ".repeat(100);
        let s = summary(&long).unwrap();
        assert!(s.chars().count() <= SUMMARY_MAX_CHARS, "{}", s.len());
        assert!(s.ends_with("word"));
        let unbroken = "é".repeat(300);
        assert_eq!(
            summary(&unbroken).unwrap().chars().count(),
            SUMMARY_MAX_CHARS
        );
    }

    #[test]
    fn enrichment_metadata_has_automem_fields() {
        let id = Uuid::from_u128(3);
        let terms = vec!["queue".to_string()];
        let v = enrichment_metadata(
            true,
            2,
            Some(DetectedPattern {
                memory_type: "Decision",
                similar_memories: 4,
                key_terms: &terms,
            }),
            [(id, 0.5)].into_iter(),
        );
        assert_eq!(
            v,
            json!({"forced": true, "temporal_links": 2,
                   "patterns_detected": [{"type": "Decision", "similar_memories": 4, "key_terms": ["queue"]}],
                   "semantic_neighbors": [{"id": id, "score": 0.5}]})
        );
    }
}
