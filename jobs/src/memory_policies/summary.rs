//! The offline, extractive summariser of `hybrid_summary`: the first sentence of each
//! summarised entry, in order, after a marker that says what the entry is, cut to the token
//! budget. No model is called, so a flush never waits on a provider and always finishes.

use super::tokens::CHARS_PER_TOKEN;

/// The role of a summary entry.
pub const SUMMARY_ROLE: &str = "system";
/// Every summary starts with this, then the number of entries and [`SUMMARY_MARKER_SUFFIX`].
pub const SUMMARY_MARKER_PREFIX: &str = "Summary of ";
const SUMMARY_MARKER_SUFFIX: &str = " earlier messages: ";

/// Whether an entry is a summary this module wrote: its role and its marker, number included.
/// The privacy job keeps these even when `system` is a non-persistable role.
pub fn is_summary(role: &str, content: &str) -> bool {
    role == SUMMARY_ROLE
        && content
            .strip_prefix(SUMMARY_MARKER_PREFIX)
            .and_then(|rest| rest.split_once(SUMMARY_MARKER_SUFFIX))
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The first sentence of `text`: up to and with the first `.`, `!` or `?` followed by
/// whitespace or the end, or up to the first line break; whitespace runs become one space.
fn first_sentence(text: &str) -> String {
    let text = text.trim();
    let mut end = text.len();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\n' {
            end = i;
            break;
        }
        if matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|(_, n)| n.is_whitespace()) {
            end = i + c.len_utf8();
            break;
        }
    }
    text[..end].split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One summary of `contents` (oldest first) of at most `budget_tokens` estimated tokens: the
/// marker, then each entry's first sentence, cut (with `…`) where the budget ends.
pub fn summarise<'a>(
    contents: impl ExactSizeIterator<Item = &'a str>,
    budget_tokens: u32,
) -> String {
    let mut text = format!(
        "{SUMMARY_MARKER_PREFIX}{}{SUMMARY_MARKER_SUFFIX}",
        contents.len()
    );
    let sentences: Vec<String> = contents
        .map(first_sentence)
        .filter(|s| !s.is_empty())
        .collect();
    text.push_str(&sentences.join(" "));
    let budget = (budget_tokens as usize).saturating_mul(CHARS_PER_TOKEN);
    if text.chars().count() > budget {
        text = text.chars().take(budget.saturating_sub(1)).collect();
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_policies::estimate_tokens;

    #[test]
    fn first_sentences_follow_the_marker() {
        let s = summarise(
            [
                "Hello there. How are you?",
                "I need v1.2 now!  Thanks",
                "no stop\nat all",
            ]
            .into_iter(),
            500,
        );
        assert_eq!(
            s,
            "Summary of 3 earlier messages: Hello there. I need v1.2 now! no stop"
        );
    }

    #[test]
    fn the_budget_is_kept() {
        let long = "word ".repeat(400);
        let s = summarise([long.as_str(), long.as_str()].into_iter(), 20);
        assert!(estimate_tokens(&s) <= 20, "{s}");
        assert!(s.starts_with("Summary of 2 earlier messages: "));
        assert!(s.ends_with('…'));
    }
}
