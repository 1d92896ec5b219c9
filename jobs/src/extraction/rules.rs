//! The rule-based extractor, the default: regular expressions for the shaped categories
//! (emails, URLs, @handles, #hashtags, ISO dates), a dictionary for tools and projects, and
//! capitalised multi-word runs for people and organisations.
//!
//! The name heuristic: a run of two or more capitalised words (joined by single spaces, or by
//! `of`/`de`/`van`/`von`/`der`/`&`) is a name once common sentence-starters, weekdays, months
//! and titles are trimmed off its ends. It is an organisation when a word is a company or
//! institution suffix (Inc, Corp, Labs, GmbH, University, …) or it contains `of` ("Bank of
//! America"); otherwise a person, if it has at most four words. It misses single-word names
//! and can take a capitalised verb at a sentence start for a first name; the LLM extractor is
//! the option when that matters.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::LazyLock;

use async_trait::async_trait;
use regex::Regex;

use super::words::{CONNECTORS, DEFAULT_TOOLS, NOT_NAMES, ORG_WORDS};
use super::{normalize, Category, Entity, ExtractError, Extractor};
use crate::text::words;

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}").unwrap()
});
static URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?i)\bhttps?://[^\s<>"'`]+"#).unwrap());
static HANDLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[\s(\[{,;:])@([A-Za-z0-9_]{1,39})\b").unwrap());
static HASHTAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[\s(\[{,;:])#([\p{L}_][\p{L}\p{N}_]*)").unwrap());
static DATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{4})-(\d{2})-(\d{2})\b").unwrap());
static WORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[\p{L}\p{N}]+(?:['’\-][\p{L}\p{N}]+)*|&").unwrap());

/// The default extractor: rules and a dictionary, no network.
#[derive(Debug, Clone)]
pub struct RuleExtractor {
    /// Normalised phrase ("visual studio code") → its category and dictionary spelling.
    phrases: HashMap<String, (Category, String)>,
    /// The most words in a phrase: how far the matcher looks ahead.
    longest: usize,
}

impl RuleExtractor {
    /// The default tools plus `tools`, and `projects` (none by default). A phrase listed as a
    /// project is a project even if it is also a tool.
    pub fn new(tools: Vec<String>, projects: Vec<String>) -> Self {
        let mut phrases = HashMap::new();
        let defaults = DEFAULT_TOOLS.iter().map(|s| s.to_string());
        for (category, name) in defaults
            .chain(tools)
            .map(|t| (Category::Tool, t))
            .chain(projects.into_iter().map(|p| (Category::Project, p)))
        {
            let key = words(&name).collect::<Vec<_>>().join(" ");
            if !key.is_empty() {
                phrases.insert(key, (category, name.trim().to_string()));
            }
        }
        let longest = phrases
            .keys()
            .map(|k| k.split(' ').count())
            .max()
            .unwrap_or(1);
        RuleExtractor { phrases, longest }
    }

    /// The entities of `text`, normalised (one per category and slug, sorted).
    pub fn extract_entities(&self, text: &str) -> Vec<Entity> {
        let mut found = Vec::new();
        // Emails and URLs first, then blanked out, so that their parts are not also read as
        // handles, hashtags, names or tools.
        let mut blanks: Vec<Range<usize>> = Vec::new();
        for m in URL.find_iter(text) {
            let url = m
                .as_str()
                .trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']']);
            found.push(Entity::new(Category::Url, url));
            blanks.push(m.range());
        }
        for m in EMAIL.find_iter(text) {
            if !blanks.iter().any(|b| b.contains(&m.start())) {
                found.push(Entity::new(Category::Email, m.as_str()));
                blanks.push(m.range());
            }
        }
        let text = blank_out(text, &blanks);

        for c in HANDLE.captures_iter(&text) {
            found.push(Entity::new(Category::Handle, format!("@{}", &c[1])));
        }
        for c in HASHTAG.captures_iter(&text) {
            found.push(Entity::new(Category::Hashtag, format!("#{}", &c[1])));
        }
        for c in DATE.captures_iter(&text) {
            let (y, m, d) = (c[1].parse(), c[2].parse(), c[3].parse());
            if let (Ok(y), Ok(m), Ok(d)) = (y, m, d) {
                if chrono::NaiveDate::from_ymd_opt(y, m, d).is_some() {
                    found.push(Entity::new(Category::Date, &c[0]));
                }
            }
        }
        self.dictionary_matches(&text, &mut found);
        self.names(&text, &mut found);
        normalize(found)
    }

    fn dictionary_matches(&self, text: &str, found: &mut Vec<Entity>) {
        let words: Vec<String> = words(text).collect();
        let mut i = 0;
        while i < words.len() {
            let longest = self.longest.min(words.len() - i);
            let hit = (1..=longest).rev().find_map(|n| {
                self.phrases
                    .get(&words[i..i + n].join(" "))
                    .map(|entry| (n, entry))
            });
            match hit {
                Some((n, (category, name))) => {
                    found.push(Entity::new(*category, name.clone()));
                    i += n;
                }
                None => i += 1,
            }
        }
    }

    fn names(&self, text: &str, found: &mut Vec<Entity>) {
        let tokens: Vec<_> = WORD.find_iter(text).collect();
        let mut run: Vec<&str> = Vec::new();
        let mut previous_end = None;
        for token in &tokens {
            let joined = previous_end.is_some_and(|end| is_name_gap(&text[end..token.start()]));
            let word = token.as_str();
            let capitalised = word.chars().next().is_some_and(char::is_uppercase);
            let connector = CONNECTORS.contains(&word);
            if !(joined && !run.is_empty() && (capitalised || connector)) {
                self.close_run(&run, found);
                run.clear();
            }
            if capitalised || (connector && !run.is_empty()) {
                run.push(word);
            }
            previous_end = Some(token.end());
        }
        self.close_run(&run, found);
    }

    fn close_run(&self, run: &[&str], found: &mut Vec<Entity>) {
        let lower = |w: &str| w.to_lowercase();
        let mut words = run;
        while let Some((first, rest)) = words.split_first() {
            if NOT_NAMES.contains(&lower(first).as_str()) || CONNECTORS.contains(first) {
                words = rest;
            } else {
                break;
            }
        }
        while let Some((last, rest)) = words.split_last() {
            if NOT_NAMES.contains(&lower(last).as_str()) || CONNECTORS.contains(last) {
                words = rest;
            } else {
                break;
            }
        }
        if words.len() < 2 {
            return;
        }
        let name = join_name(words);
        let key = words.iter().map(|w| lower(w)).collect::<Vec<_>>().join(" ");
        if self.phrases.contains_key(&key) {
            return;
        }
        let org = words
            .iter()
            .any(|w| ORG_WORDS.contains(&lower(w).as_str()) || *w == "of" || *w == "&");
        if org {
            found.push(Entity::new(Category::Organization, name));
        } else if words.len() <= 4 {
            found.push(Entity::new(Category::Person, name));
        }
    }
}

impl Default for RuleExtractor {
    fn default() -> Self {
        RuleExtractor::new(Vec::new(), Vec::new())
    }
}

#[async_trait]
impl Extractor for RuleExtractor {
    async fn extract(&self, text: &str) -> Result<Vec<Entity>, ExtractError> {
        Ok(self.extract_entities(text))
    }
}

/// Only plain spaces join the words of a name: punctuation or a line break ends it.
fn is_name_gap(gap: &str) -> bool {
    !gap.is_empty() && gap.len() <= 3 && gap.chars().all(|c| c == ' ' || c == '\t')
}

fn join_name(words: &[&str]) -> String {
    words.join(" ")
}

/// `text` with the given byte ranges replaced by spaces, byte for byte, so the result is
/// still valid UTF-8 (ranges from regex matches fall on character boundaries).
fn blank_out(text: &str, ranges: &[Range<usize>]) -> String {
    if ranges.is_empty() {
        return text.to_string();
    }
    let mut bytes = text.as_bytes().to_vec();
    for r in ranges {
        bytes[r.clone()].fill(b' ');
    }
    String::from_utf8(bytes).expect("blanking whole characters keeps UTF-8 valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(entities: &[Entity], category: Category) -> Vec<String> {
        entities
            .iter()
            .filter(|e| e.category == category)
            .map(|e| e.value.clone())
            .collect()
    }

    #[test]
    fn shaped_categories() {
        let x = RuleExtractor::default();
        let e = x.extract_entities(
            "Mail alice.smith@example.com or see https://example.org/docs/setup. \
             Ping @bob_dev on Slack, tag #Launch2024 and #ops; due 2024-05-31, not 2024-02-30.",
        );
        assert_eq!(of(&e, Category::Email), vec!["alice.smith@example.com"]);
        assert_eq!(
            of(&e, Category::Url),
            vec!["https://example.org/docs/setup"]
        );
        assert_eq!(of(&e, Category::Handle), vec!["@bob_dev"]);
        let mut tags = of(&e, Category::Hashtag);
        tags.sort();
        assert_eq!(tags, vec!["#Launch2024", "#ops"]);
        assert_eq!(of(&e, Category::Date), vec!["2024-05-31"]);
        assert_eq!(of(&e, Category::Tool), vec!["Slack"]);
        let email = e.iter().find(|e| e.category == Category::Email).unwrap();
        assert_eq!(email.slug, "alice-smith-example-com");
    }

    #[test]
    fn emails_and_urls_are_not_handles_or_hashtags() {
        let x = RuleExtractor::default();
        let e = x.extract_entities("see https://example.com/page#section and bob@example.com");
        assert!(of(&e, Category::Handle).is_empty(), "{e:?}");
        assert!(of(&e, Category::Hashtag).is_empty(), "{e:?}");
        assert_eq!(
            of(&e, Category::Url),
            vec!["https://example.com/page#section"]
        );
    }

    #[test]
    fn tools_and_projects_from_the_dictionary() {
        let x = RuleExtractor::new(
            vec!["Bazel".into()],
            vec!["memwarden".into(), "Project Atlas".into()],
        );
        let e = x.extract_entities(
            "We moved memwarden from MySQL to postgres, built with bazel in VS Code; Project Atlas next. Node.js too.",
        );
        let mut tools = of(&e, Category::Tool);
        tools.sort();
        assert_eq!(
            tools,
            vec!["Bazel", "MySQL", "Node.js", "Postgres", "VS Code"]
        );
        let mut projects = of(&e, Category::Project);
        projects.sort();
        assert_eq!(projects, vec!["Project Atlas", "memwarden"]);
        assert!(of(&e, Category::Person).is_empty(), "{e:?}");
    }

    #[test]
    fn people_and_organisations() {
        let x = RuleExtractor::default();
        let e = x.extract_entities(
            "Yesterday Ada Lovelace met Grace Hopper at Acme Labs. Later, Alan Turing joined \
             the University of Manchester, and Globex Corp hired Ludwig van Beethoven.",
        );
        let mut people = of(&e, Category::Person);
        people.sort();
        assert_eq!(
            people,
            vec![
                "Ada Lovelace",
                "Alan Turing",
                "Grace Hopper",
                "Ludwig van Beethoven"
            ]
        );
        let mut orgs = of(&e, Category::Organization);
        orgs.sort();
        assert_eq!(
            orgs,
            vec!["Acme Labs", "Globex Corp", "University of Manchester"]
        );
    }

    #[test]
    fn single_words_and_sentence_starters_are_not_names() {
        let x = RuleExtractor::default();
        let e = x.extract_entities("The deploy failed. Alice fixed it. On Monday We Shipped.");
        assert!(of(&e, Category::Person).is_empty(), "{e:?}");
    }

    #[test]
    fn output_is_normalised_and_deterministic() {
        let x = RuleExtractor::default();
        let text = "Rust and rust and RUST, with #rust";
        let a = x.extract_entities(text);
        assert_eq!(a, x.extract_entities(text));
        assert_eq!(of(&a, Category::Tool), vec!["Rust"]);
        assert_eq!(of(&a, Category::Hashtag), vec!["#rust"]);
    }
}
