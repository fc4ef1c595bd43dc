//! THINK: one question to an LLM. It goes to the host's think handler when one is registered, else
//! to the configured provider, which speaks one of three wire formats: OpenAI's chat completions
//! (also Ollama, vLLM, llama.cpp's server and Gemini's OpenAI-compatible endpoint), Gemini's
//! `generateContent`, or Anthropic's messages.

mod anthropic;
pub(super) mod dispatch;
mod gemini;
pub(in crate::runtime) mod host;
mod openai;

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::NetError;
use crate::protocol::{ThinkImage, ThinkReply};
use crate::runtime::AgentId;

pub use host::ThinkHandler;

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// `POST {base}/chat/completions`, bearer key.
    OpenAi,
    /// `POST {base}/v1beta/models/{model}:generateContent`, `x-goog-api-key`.
    Gemini,
    /// `POST {base}/v1/messages`, `x-api-key`.
    Anthropic,
}

impl ProviderKind {
    /// `openai`, `gemini` or `anthropic`: the `provider` of a THINK reply.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Anthropic => "anthropic",
        }
    }

    pub fn from_name(name: &str) -> Option<ProviderKind> {
        [ProviderKind::OpenAi, ProviderKind::Gemini, ProviderKind::Anthropic]
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }

    fn default_base_url(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "https://api.openai.com/v1",
            ProviderKind::Gemini => "https://generativelanguage.googleapis.com",
            ProviderKind::Anthropic => "https://api.anthropic.com",
        }
    }

    fn default_model(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "gpt-4o-mini",
            ProviderKind::Gemini => "gemini-2.0-flash",
            ProviderKind::Anthropic => "claude-3-5-haiku-latest",
        }
    }
}

/// Where THINK goes when no host handler is registered. Its `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// Without a trailing slash: `https://api.openai.com/v1`, `http://localhost:11434/v1`, ...
    pub base_url: String,
    /// `None` for servers that take none (a local Ollama).
    pub api_key: Option<String>,
    /// Used when a THINK names no model.
    pub model: String,
    /// For one call, the whole answer included (default 120 s).
    pub timeout: Duration,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<hidden>"))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ProviderConfig {
    /// The provider's public endpoint and default model, without a key.
    pub fn new(kind: ProviderKind) -> ProviderConfig {
        ProviderConfig {
            kind,
            base_url: kind.default_base_url().to_string(),
            api_key: None,
            model: kind.default_model().to_string(),
            timeout: Duration::from_secs(120),
        }
    }

    /// The provider the environment names, in this order: Gemini (`GEMINI_API_KEY` or
    /// `GOOGLE_API_KEY`, as the seed Clove), Anthropic (`ANTHROPIC_API_KEY`), then any
    /// OpenAI-compatible server (`OPENAI_API_KEY` or `OPENAI_BASE_URL`). `*_MODEL` and `*_BASE_URL`
    /// of the chosen one override its defaults. Empty variables count as unset.
    pub fn from_env() -> Option<ProviderConfig> {
        Self::from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Option<ProviderConfig> {
        let (kind, prefix, key) = if let Some(key) = var("GEMINI_API_KEY").or_else(|| var("GOOGLE_API_KEY")) {
            (ProviderKind::Gemini, "GEMINI", Some(key))
        } else if let Some(key) = var("ANTHROPIC_API_KEY") {
            (ProviderKind::Anthropic, "ANTHROPIC", Some(key))
        } else if var("OPENAI_API_KEY").is_some() || var("OPENAI_BASE_URL").is_some() {
            (ProviderKind::OpenAi, "OPENAI", var("OPENAI_API_KEY"))
        } else {
            return None;
        };
        let mut config = ProviderConfig::new(kind);
        config.api_key = key;
        if let Some(url) = var(&format!("{prefix}_BASE_URL")) {
            config.base_url = url.trim_end_matches('/').to_string();
        }
        if let Some(model) = var(&format!("{prefix}_MODEL")) {
            config.model = model;
        }
        Some(config)
    }
}

/// A THINK as the provider or the host handler sees it, once the gate has passed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ThinkCall {
    pub agent_id: AgentId,
    pub agent_name: String,
    pub prompt: String,
    pub image: Option<ThinkImage>,
    pub system_instruction: Option<String>,
    pub temperature: Option<f64>,
    /// The agent's choice; `None` means the provider's configured model.
    pub model: Option<String>,
    /// The agent's cap, lowered to what its token quota has left.
    pub max_tokens: Option<u32>,
    pub thinking_level: Option<String>,
}

/// What a provider or the host handler answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThinkAnswer {
    pub text: String,
    /// The model that answered; empty means "the one asked for".
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Tokens and calls an agent has spent, counted against its [`LlmQuota`](crate::policy::LlmQuota).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LlmUsage {
    pub tokens: u64,
    pub calls: u64,
}

/// Answers a THINK: the host handler if one is registered, else the provider.
pub(super) fn think(
    host: &host::HostProvider,
    client: &ureq::Agent,
    provider: Option<&ProviderConfig>,
    call: &ThinkCall,
) -> Result<ThinkReply, NetError> {
    let (answer, provider_name, configured_model) = match host.call(call) {
        Some(answer) => (answer?, "host", ""),
        None => {
            let provider = provider.ok_or(NetError::NoProvider)?;
            (ask(client, provider, call)?, provider.kind.name(), provider.model.as_str())
        }
    };
    let model = match (answer.model.is_empty(), &call.model) {
        (false, _) => answer.model,
        (true, Some(asked)) => asked.clone(),
        (true, None) => configured_model.to_string(),
    };
    Ok(ThinkReply {
        text: answer.text,
        model,
        provider: provider_name.to_string(),
        input_tokens: answer.input_tokens,
        output_tokens: answer.output_tokens,
    })
}

/// The most of a provider's reply that is read.
const MAX_PROVIDER_REPLY: u64 = 16 << 20;

/// One request in the provider's wire format: where to send it, extra headers, and the body.
struct ProviderRequest {
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Value,
}

fn ask(client: &ureq::Agent, provider: &ProviderConfig, call: &ThinkCall) -> Result<ThinkAnswer, NetError> {
    let model = call.model.as_deref().unwrap_or(&provider.model);
    let request = match provider.kind {
        ProviderKind::OpenAi => openai::request(provider, model, call),
        ProviderKind::Gemini => gemini::request(provider, model, call)?,
        ProviderKind::Anthropic => anthropic::request(provider, model, call),
    };
    let name = provider.kind.name();
    let (status, reply) = post_json(client, &request, provider.timeout)?;
    if !(200..300).contains(&status) {
        return Err(NetError::Provider { provider: name, status, message: error_message(&reply) });
    }
    let reply: Value = serde_json::from_slice(&reply)
        .map_err(|e| NetError::BadProviderReply { provider: name, why: format!("not JSON: {e}") })?;
    let answer = match provider.kind {
        ProviderKind::OpenAi => openai::answer(&reply),
        ProviderKind::Gemini => gemini::answer(&reply),
        ProviderKind::Anthropic => anthropic::answer(&reply),
    };
    answer.map_err(|why| NetError::BadProviderReply { provider: name, why })
}

fn post_json(client: &ureq::Agent, request: &ProviderRequest, timeout: Duration) -> Result<(u16, Vec<u8>), NetError> {
    let failed = |e: ureq::Error| match e {
        ureq::Error::Timeout(_) => {
            NetError::Timeout { what: format!("the LLM request to {}", request.url), ms: timeout.as_millis() as u64 }
        }
        other => NetError::Transport { url: request.url.clone(), why: other.to_string() },
    };
    let mut builder = ureq::http::Request::post(&request.url).header("content-type", "application/json");
    for (name, value) in &request.headers {
        builder = builder.header(*name, value.as_str());
    }
    let body = serde_json::to_vec(&request.body).unwrap_or_default();
    let http_request = builder.body(body).map_err(|e| NetError::Invalid(format!("provider request: {e}")))?;
    let http_request = client.configure_request(http_request).timeout_global(Some(timeout)).build();
    let mut response = client.run(http_request).map_err(failed)?;
    let status = response.status().as_u16();
    let bytes = response.body_mut().with_config().limit(MAX_PROVIDER_REPLY).read_to_vec().map_err(failed)?;
    Ok((status, bytes))
}

/// The message of an error reply: every provider puts it at `error.message`.
fn error_message(reply: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(reply).ok();
    match parsed.as_ref().and_then(|v| v["error"]["message"].as_str()) {
        Some(message) => message.to_string(),
        None => String::from_utf8_lossy(&reply[..reply.len().min(300)]).into_owned(),
    }
}

/// The client for providers: the host configured them, so the environment's proxy applies and
/// loopback servers (a local Ollama) are fine; statuses come back as replies.
pub(super) fn client() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(concat!("clove/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::new_with_config(config)
}

/// The image as base64, which every provider wants.
fn base64(image: &ThinkImage) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(&image.data)
}

/// A `u64` field of a reply, 0 when absent.
fn count(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_environment_names_a_provider_in_the_documented_order() {
        assert_eq!(ProviderConfig::from_vars(vars(&[])), None);
        let all = [("OPENAI_API_KEY", "o"), ("ANTHROPIC_API_KEY", "a"), ("GEMINI_API_KEY", "g"), ("GEMINI_MODEL", "m")];
        let gemini = ProviderConfig::from_vars(vars(&all)).unwrap();
        assert_eq!(
            (gemini.kind, gemini.api_key.as_deref(), gemini.model.as_str()),
            (ProviderKind::Gemini, Some("g"), "m")
        );
        let anthropic = ProviderConfig::from_vars(vars(&all[..2])).unwrap();
        assert_eq!((anthropic.kind, anthropic.api_key.as_deref()), (ProviderKind::Anthropic, Some("a")));
        assert_eq!(anthropic.base_url, "https://api.anthropic.com");
        let google = ProviderConfig::from_vars(vars(&[("GOOGLE_API_KEY", "k")])).unwrap();
        assert_eq!(google.kind, ProviderKind::Gemini);
    }

    #[test]
    fn a_base_url_alone_names_a_keyless_openai_compatible_server() {
        let ollama = ProviderConfig::from_vars(vars(&[
            ("OPENAI_BASE_URL", "http://localhost:11434/v1/"),
            ("OPENAI_MODEL", "llama3.2"),
        ]))
        .unwrap();
        assert_eq!(ollama.kind, ProviderKind::OpenAi);
        assert_eq!((ollama.base_url.as_str(), ollama.api_key.as_deref()), ("http://localhost:11434/v1", None));
        assert_eq!(ollama.model, "llama3.2");
    }

    #[test]
    fn debug_hides_the_key() {
        let mut config = ProviderConfig::new(ProviderKind::OpenAi);
        config.api_key = Some("sk-secret".into());
        let shown = format!("{config:?}");
        assert!(!shown.contains("sk-secret") && shown.contains("<hidden>"), "{shown}");
    }

    #[test]
    fn error_messages_come_from_the_reply() {
        assert_eq!(error_message(br#"{"error":{"message":"bad key","type":"auth"}}"#), "bad key");
        assert_eq!(error_message(b"plain text"), "plain text");
    }
}
