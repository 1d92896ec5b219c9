//! Text normalisation shared by the hash embedder, the dictionary matcher and pattern terms,
//! so that all three agree on what a word is.

/// Lowercased runs of alphanumeric characters: "Don't use Postgres-15!" → don, t, use,
/// postgres, 15.
pub(crate) fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
}

#[cfg(test)]
mod tests {
    #[test]
    fn words_are_lowercased_alphanumeric_runs() {
        let w: Vec<String> = super::words("Don't use Postgres-15!  Zürich").collect();
        assert_eq!(w, ["don", "t", "use", "postgres", "15", "zürich"]);
    }
}
