//! The token estimate every limit is measured in. No tokenizer is a dependency, so a token is
//! counted as four characters (Unicode scalar values), rounded up per entry: OpenAI's rule of
//! thumb for English text. SQL computes the same (`ceil(char_length(content) / 4.0)`), so the
//! catch-up query and the jobs agree.

/// Characters per token of the estimate.
pub const CHARS_PER_TOKEN: usize = 4;

/// The SQL expression of the estimate for a `content` column.
pub(crate) const SQL_TOKENS: &str = "ceil(char_length(content) / 4.0)::bigint";

/// `ceil(chars / 4)`: 0 for the empty text, 1 for one to four characters.
pub fn estimate_tokens(text: &str) -> u64 {
    text.chars().count().div_ceil(CHARS_PER_TOKEN) as u64
}

#[cfg(test)]
mod tests {
    use super::estimate_tokens;

    #[test]
    fn four_characters_make_a_token_rounded_up() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("zürich"), 2, "characters, not bytes");
    }
}
