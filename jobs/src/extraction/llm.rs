//! Entity extraction by a chat model, through async-openai's chat completions with a
//! JSON-schema response format (structured output), on any OpenAI-compatible endpoint.
//!
//! async-openai retries 429s (except `insufficient_quota`) and 5xx itself; its backoff is
//! bounded here by `max_retry_elapsed`, after which the failure goes to the queue, which
//! retries the job with its own persisted backoff.

use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequest, ResponseFormat, ResponseFormatJsonSchema,
};
use async_openai::Client;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{normalize, Category, Entity, ExtractError, Extractor};

/// Settings of the LLM extractor: the same provider settings as the embedder's, plus a chat
/// model. `Debug` masks the API key.
#[derive(Clone)]
pub struct LlmExtractionConfig {
    /// The API root, e.g. `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub base_url: String,
    pub api_key: Option<String>,
    /// A chat model that supports `response_format: json_schema`.
    pub model: String,
    /// Per HTTP request.
    pub timeout: Duration,
    /// How long async-openai may keep retrying 429s and 5xx before giving up.
    pub max_retry_elapsed: Duration,
    /// Longer texts are cut (at a character boundary) to bound the prompt's cost.
    pub max_input_chars: usize,
}

impl Default for LlmExtractionConfig {
    fn default() -> Self {
        LlmExtractionConfig {
            base_url: "https://api.openai.com/v1".into(),
            api_key: None,
            model: "gpt-4o-mini".into(),
            timeout: Duration::from_secs(30),
            max_retry_elapsed: Duration::from_secs(60),
            max_input_chars: 8000,
        }
    }
}

impl std::fmt::Debug for LlmExtractionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmExtractionConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "********"))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("max_retry_elapsed", &self.max_retry_elapsed)
            .field("max_input_chars", &self.max_input_chars)
            .finish()
    }
}

const INSTRUCTIONS: &str = "Extract the entities mentioned in the user's text. \
Categories: person, organization, project, tool (software, services, languages), concept \
(a named idea or technique), email, url, handle (@name), hashtag (#tag), date (as YYYY-MM-DD). \
Give each entity's value exactly as written in the text. Do not invent entities; return an \
empty list when there are none.";

/// The LLM extractor.
pub struct LlmExtractor {
    client: Client<OpenAIConfig>,
    config: LlmExtractionConfig,
}

impl LlmExtractor {
    pub fn new(config: LlmExtractionConfig) -> Result<Self, ExtractError> {
        if config.model.trim().is_empty() {
            return Err(ExtractError::Permanent(
                "no extraction model configured".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| ExtractError::Permanent(format!("building the HTTP client: {e}")))?;
        // An explicit key, or an empty one: never OPENAI_API_KEY from the environment behind
        // the configuration's back.
        let openai = OpenAIConfig::new()
            .with_api_base(config.base_url.trim_end_matches('/'))
            .with_api_key(config.api_key.clone().unwrap_or_default());
        let backoff = backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(Duration::from_millis(500))
            .with_max_elapsed_time(Some(config.max_retry_elapsed))
            .build();
        let client = Client::with_config(openai)
            .with_http_client(http)
            .with_backoff(backoff);
        Ok(LlmExtractor { client, config })
    }

    fn request(&self, text: &str) -> CreateChatCompletionRequest {
        let text = match text.char_indices().nth(self.config.max_input_chars) {
            Some((cut, _)) => &text[..cut],
            None => text,
        };
        CreateChatCompletionRequest {
            model: self.config.model.clone(),
            messages: vec![
                ChatCompletionRequestSystemMessage::from(INSTRUCTIONS).into(),
                ChatCompletionRequestUserMessage::from(text).into(),
            ],
            response_format: Some(ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema {
                    name: "entities".into(),
                    description: Some("Entities mentioned in a memory".into()),
                    schema: Some(answer_schema()),
                    strict: Some(true),
                },
            }),
            ..Default::default()
        }
    }
}

#[async_trait]
impl Extractor for LlmExtractor {
    async fn extract(&self, text: &str) -> Result<Vec<Entity>, ExtractError> {
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        let response = self
            .client
            .chat()
            .create(self.request(text))
            .await
            .map_err(classify)?;
        let message = response
            .choices
            .into_iter()
            .next()
            .map(|c| c.message)
            .ok_or_else(|| ExtractError::BadResponse("an answer with no choices".into()))?;
        if let Some(refusal) = message.refusal {
            return Err(ExtractError::Permanent(format!(
                "the model refused: {refusal}"
            )));
        }
        let content = message
            .content
            .ok_or_else(|| ExtractError::BadResponse("an answer with no content".into()))?;
        parse_answer(&content)
    }
}

/// The JSON schema of the answer: `{"entities": [{"category", "value"}]}`. Strict mode needs
/// every property required and no additional ones.
fn answer_schema() -> serde_json::Value {
    let categories: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
    json!({
        "type": "object",
        "properties": {
            "entities": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "category": {"type": "string", "enum": categories},
                        "value": {"type": "string"}
                    },
                    "required": ["category", "value"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["entities"],
        "additionalProperties": false
    })
}

#[derive(Deserialize)]
struct Answer {
    entities: Vec<AnswerEntity>,
}

#[derive(Deserialize)]
struct AnswerEntity {
    category: String,
    value: String,
}

/// Reads the model's JSON. A category outside the ten is dropped rather than failing the
/// whole answer: servers without strict-schema support sometimes invent one.
fn parse_answer(content: &str) -> Result<Vec<Entity>, ExtractError> {
    let answer: Answer = serde_json::from_str(content.trim()).map_err(|e| {
        ExtractError::BadResponse(format!("the answer is not the requested JSON ({e})"))
    })?;
    Ok(normalize(
        answer
            .entities
            .into_iter()
            .filter_map(|e| {
                let category = e.category.parse::<Category>().ok()?;
                Some(Entity::new(category, e.value))
            })
            .collect(),
    ))
}

/// async-openai reports API failures without the HTTP status, so the class comes from the
/// error's `type`/`code` (OpenAI's rate-limit and quota codes), and a 5xx shows as an error
/// with neither.
fn classify(e: OpenAIError) -> ExtractError {
    match e {
        OpenAIError::ApiError(api) => {
            let marks = [api.r#type.as_deref(), api.code.as_deref()];
            if marks.contains(&Some("insufficient_quota")) {
                ExtractError::QuotaExceeded(api.message)
            } else if marks.iter().flatten().any(|m| {
                matches!(
                    *m,
                    "rate_limit_exceeded" | "rate_limit_error" | "requests" | "tokens"
                )
            }) {
                ExtractError::RateLimited {
                    retry_after: None,
                    message: api.message,
                }
            } else if marks == [None, None] {
                ExtractError::Transient(api.message)
            } else {
                ExtractError::Permanent(api.to_string())
            }
        }
        OpenAIError::Reqwest(e) => ExtractError::Transient(format!("chat completion: {e}")),
        OpenAIError::JSONDeserialize(e, body) => {
            let body: String = body.chars().take(300).collect();
            ExtractError::BadResponse(format!("unreadable chat answer ({e}): {body}"))
        }
        OpenAIError::InvalidArgument(m) => ExtractError::Permanent(m),
        other => ExtractError::Transient(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_asks_for_the_schema() {
        let x = LlmExtractor::new(LlmExtractionConfig {
            base_url: "http://127.0.0.1:9/v1/".into(),
            model: "m".into(),
            max_input_chars: 5,
            ..Default::default()
        })
        .unwrap();
        let body = serde_json::to_value(x.request("abcdefgh")).unwrap();
        assert_eq!(body["model"], "m");
        assert_eq!(body["response_format"]["type"], "json_schema");
        assert_eq!(body["response_format"]["json_schema"]["strict"], true);
        assert_eq!(
            body["response_format"]["json_schema"]["schema"]["properties"]["entities"]["items"]
                ["properties"]["category"]["enum"]
                .as_array()
                .unwrap()
                .len(),
            10
        );
        assert_eq!(body["messages"][1]["content"], "abcde");
    }

    #[test]
    fn answers_are_parsed_and_normalised() {
        let e = parse_answer(
            r#"{"entities":[{"category":"person","value":"Ada Lovelace"},
                {"category":"planet","value":"Mars"},{"category":"tool","value":"Rust"},
                {"category":"tool","value":"rust"}]}"#,
        )
        .unwrap();
        assert_eq!(
            e,
            vec![
                Entity::new(Category::Person, "Ada Lovelace"),
                Entity::new(Category::Tool, "Rust")
            ]
        );
        assert!(matches!(
            parse_answer("not json"),
            Err(ExtractError::BadResponse(_))
        ));
    }

    #[test]
    fn errors_are_classified() {
        let api = |t: Option<&str>, c: Option<&str>| {
            OpenAIError::ApiError(async_openai::error::ApiError {
                message: "m".into(),
                r#type: t.map(String::from),
                param: None,
                code: c.map(String::from),
            })
        };
        assert!(matches!(
            classify(api(Some("insufficient_quota"), None)),
            ExtractError::QuotaExceeded(_)
        ));
        assert!(matches!(
            classify(api(Some("requests"), Some("rate_limit_exceeded"))),
            ExtractError::RateLimited { .. }
        ));
        assert!(matches!(
            classify(api(None, None)),
            ExtractError::Transient(_)
        ));
        assert!(matches!(
            classify(api(Some("invalid_request_error"), Some("model_not_found"))),
            ExtractError::Permanent(_)
        ));
    }
}
