//! OpenAI's chat completions, as OpenAI, Ollama, vLLM, llama.cpp's server and Gemini's
//! OpenAI-compatible endpoint serve them.

use serde_json::{json, Value};

use super::{base64, count, ProviderConfig, ProviderRequest, ThinkAnswer, ThinkCall};

pub(super) fn request(provider: &ProviderConfig, model: &str, call: &ThinkCall) -> ProviderRequest {
    let mut messages = Vec::new();
    if let Some(system) = &call.system_instruction {
        messages.push(json!({ "role": "system", "content": system }));
    }
    let content = match &call.image {
        None => json!(call.prompt),
        Some(image) => json!([
            { "type": "text", "text": call.prompt },
            { "type": "image_url", "image_url": { "url": format!("data:{};base64,{}", image.mime_type, base64(image)) } },
        ]),
    };
    messages.push(json!({ "role": "user", "content": content }));
    let mut body = json!({ "model": model, "messages": messages });
    if let Some(t) = call.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(n) = call.max_tokens {
        body["max_tokens"] = json!(n);
    }
    if let Some(level) = &call.thinking_level {
        body["reasoning_effort"] = json!(level);
    }
    let headers = provider.api_key.iter().map(|key| ("authorization", format!("Bearer {key}"))).collect();
    ProviderRequest { url: format!("{}/chat/completions", provider.base_url), headers, body }
}

pub(super) fn answer(reply: &Value) -> Result<ThinkAnswer, String> {
    let message = &reply["choices"][0]["message"];
    let text = match (message["content"].as_str(), message["refusal"].as_str()) {
        (Some(text), _) => text.to_string(),
        (None, Some(refusal)) => return Err(format!("the model refused: {refusal}")),
        (None, None) => return Err("no choices[0].message.content".into()),
    };
    Ok(ThinkAnswer {
        text,
        model: reply["model"].as_str().unwrap_or_default().to_string(),
        input_tokens: count(&reply["usage"]["prompt_tokens"]),
        output_tokens: count(&reply["usage"]["completion_tokens"]),
    })
}
