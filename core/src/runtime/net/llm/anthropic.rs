//! Anthropic's messages API.

use serde_json::{json, Value};

use super::{base64, count, ProviderConfig, ProviderRequest, ThinkAnswer, ThinkCall};

/// Anthropic requires `max_tokens`; this is sent when the agent sets none.
const DEFAULT_MAX_TOKENS: u32 = 4096;
const API_VERSION: &str = "2023-06-01";

pub(super) fn request(provider: &ProviderConfig, model: &str, call: &ThinkCall) -> ProviderRequest {
    let mut content = Vec::new();
    if let Some(image) = &call.image {
        content.push(json!({
            "type": "image",
            "source": { "type": "base64", "media_type": image.mime_type, "data": base64(image) },
        }));
    }
    content.push(json!({ "type": "text", "text": call.prompt }));
    let mut body = json!({
        "model": model,
        "max_tokens": call.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": [{ "role": "user", "content": content }],
    });
    if let Some(system) = &call.system_instruction {
        body["system"] = json!(system);
    }
    if let Some(t) = call.temperature {
        body["temperature"] = json!(t);
    }
    let mut headers = vec![("anthropic-version", API_VERSION.to_string())];
    headers.extend(provider.api_key.iter().map(|key| ("x-api-key", key.clone())));
    ProviderRequest { url: format!("{}/v1/messages", provider.base_url), headers, body }
}

pub(super) fn answer(reply: &Value) -> Result<ThinkAnswer, String> {
    let blocks = reply["content"].as_array().ok_or("no content")?;
    let text = blocks.iter().filter(|b| b["type"] == "text").filter_map(|b| b["text"].as_str()).collect();
    Ok(ThinkAnswer {
        text,
        model: reply["model"].as_str().unwrap_or_default().to_string(),
        input_tokens: count(&reply["usage"]["input_tokens"]),
        output_tokens: count(&reply["usage"]["output_tokens"]),
    })
}
