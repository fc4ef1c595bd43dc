//! Gemini's own `generateContent`, as the seed Clove used it.

use serde_json::{json, Value};

use super::{base64, count, ProviderConfig, ProviderRequest, ThinkAnswer, ThinkCall};
use crate::runtime::net::NetError;

pub(super) fn request(provider: &ProviderConfig, model: &str, call: &ThinkCall) -> Result<ProviderRequest, NetError> {
    // The model goes into the URL's path, which the host's key authorises: it must stay a name.
    let name = model.strip_prefix("models/").unwrap_or(model);
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
        return Err(NetError::Invalid(format!("model name {model:?}: letters, digits, '-', '.' and '_' only")));
    }
    let mut parts = vec![json!({ "text": call.prompt })];
    if let Some(image) = &call.image {
        parts.push(json!({ "inlineData": { "mimeType": image.mime_type, "data": base64(image) } }));
    }
    let mut body = json!({ "contents": [{ "role": "user", "parts": parts }] });
    if let Some(system) = &call.system_instruction {
        body["systemInstruction"] = json!({ "parts": [{ "text": system }] });
    }
    let mut generation = serde_json::Map::new();
    if let Some(t) = call.temperature {
        generation.insert("temperature".into(), json!(t));
    }
    if let Some(n) = call.max_tokens {
        generation.insert("maxOutputTokens".into(), json!(n));
    }
    if let Some(level) = &call.thinking_level {
        generation.insert("thinkingConfig".into(), json!({ "thinkingLevel": level }));
    }
    if !generation.is_empty() {
        body["generationConfig"] = Value::Object(generation);
    }
    let headers = provider.api_key.iter().map(|key| ("x-goog-api-key", key.clone())).collect();
    let url = format!("{}/v1beta/models/{name}:generateContent", provider.base_url);
    Ok(ProviderRequest { url, headers, body })
}

pub(super) fn answer(reply: &Value) -> Result<ThinkAnswer, String> {
    let Some(parts) = reply["candidates"][0]["content"]["parts"].as_array() else {
        return Err(match reply["promptFeedback"]["blockReason"].as_str() {
            Some(reason) => format!("the prompt was blocked ({reason})"),
            None => "no candidates[0].content.parts".into(),
        });
    };
    // Parts marked `thought` are the model's reasoning, not its answer.
    let text = parts.iter().filter(|p| p["thought"] != json!(true)).filter_map(|p| p["text"].as_str()).collect();
    let usage = &reply["usageMetadata"];
    Ok(ThinkAnswer {
        text,
        model: reply["modelVersion"].as_str().unwrap_or_default().to_string(),
        input_tokens: count(&usage["promptTokenCount"]),
        output_tokens: count(&usage["candidatesTokenCount"]) + count(&usage["thoughtsTokenCount"]),
    })
}
