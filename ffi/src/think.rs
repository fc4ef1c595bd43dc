//! THINK from C: which LLM provider the runtime asks, or a C function (the host provider) that
//! answers instead, filling a `clove_think_answer` through setters.

use std::ffi::{c_char, c_void, CString};
use std::ptr;
use std::sync::Arc;

use clove_core::runtime::{ProviderConfig, ProviderKind, ThinkAnswer, ThinkCall, ThinkHandler};

use crate::boundary::{clove_status, guard, opt_str_arg, str_arg, Error};
use crate::handle::BoxHandle;
use crate::runtime::{clove_runtime, clove_runtime_options};

/// Sets the LLM provider THINK asks when no host handler is registered, replacing the one the
/// environment named (see docs/services.md). `provider` is "openai" (any OpenAI-compatible
/// server), "gemini" or "anthropic"; NULL means none. `base_url`, `api_key` and `model` may each
/// be NULL for the provider's default (no key).
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live options; each string is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_options_set_llm(
    opts: *mut clove_runtime_options,
    provider: *const c_char,
    base_url: *const c_char,
    api_key: *const c_char,
    model: *const c_char,
) -> clove_status {
    guard("clove_runtime_options_set_llm", || {
        // SAFETY: the caller's contract on `opts` and on each string.
        let (c, provider, base_url, api_key, model) = unsafe {
            (
                clove_runtime_options::borrow_mut(opts, "opts")?,
                opt_str_arg(provider, "provider")?,
                opt_str_arg(base_url, "base_url")?,
                opt_str_arg(api_key, "api_key")?,
                opt_str_arg(model, "model")?,
            )
        };
        let Some(name) = provider else {
            c.net.llm = None;
            return Ok(());
        };
        let kind = ProviderKind::from_name(name)
            .ok_or_else(|| Error::invalid(format!("unknown provider {name:?} (openai, gemini or anthropic)")))?;
        let mut config = ProviderConfig::new(kind);
        if let Some(url) = base_url {
            config.base_url = url.trim_end_matches('/').to_string();
        }
        config.api_key = api_key.map(str::to_string);
        if let Some(model) = model {
            config.model = model.to_string();
        }
        c.net.llm = Some(config);
        Ok(())
    })
}

/// Sets whether agents' HTTP may reach addresses that are not public: loopback, private ranges,
/// link-local (cloud metadata), and the like, checked on every address a name resolves to. The
/// default refuses them.
///
/// Thread-safety: not while another call uses the same options.
///
/// # Safety
/// `opts` is NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_options_set_http_refuse_non_public(
    opts: *mut clove_runtime_options,
    refuse: bool,
) -> clove_status {
    guard("clove_runtime_options_set_http_refuse_non_public", || {
        // SAFETY: the caller's contract on `opts`.
        unsafe { clove_runtime_options::borrow_mut(opts, "opts") }?.net.refuse_non_public = refuse;
        Ok(())
    })
}

/// A THINK as the host handler sees it. Strings are NUL-terminated UTF-8; everything is valid only
/// during the handler's call.
#[repr(C)]
pub struct clove_think_request {
    /// The agent that asks.
    pub agent_id: u64,
    pub agent_name: *const c_char,
    pub prompt: *const c_char,
    /// NULL when none.
    pub system_instruction: *const c_char,
    /// NULL when the agent named no model.
    pub model: *const c_char,
    /// NULL (and `image_len` 0) when no image came with the prompt.
    pub image: *const u8,
    pub image_len: usize,
    /// "image/png", ...; NULL when no image.
    pub image_mime_type: *const c_char,
    /// Whether `temperature` was given.
    pub has_temperature: bool,
    pub temperature: f64,
    /// The most output tokens (the agent's cap, lowered to its quota), or 0 for no limit.
    pub max_tokens: u32,
    /// NULL when none.
    pub thinking_level: *const c_char,
}

/// Where the host handler puts its answer, through the `clove_think_answer_set_*` setters, which
/// copy what they are given. Owned by the library and valid only during the handler's call. An
/// answer with an error set fails the THINK with that message; one with neither text nor error
/// fails it too.
pub struct clove_think_answer {
    _private: [u8; 0],
}

/// What the handler set so far.
#[derive(Default)]
pub(crate) struct HostAnswer {
    answer: ThinkAnswer,
    has_text: bool,
    error: Option<String>,
}

impl BoxHandle for clove_think_answer {
    type Rust = HostAnswer;
}

/// Sets the answer's text.
///
/// Thread-safety: the handler's thread, during the handler's call.
///
/// # Safety
/// `answer` is NULL or the handler's answer; `text` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn clove_think_answer_set_text(
    answer: *mut clove_think_answer,
    text: *const c_char,
) -> clove_status {
    guard("clove_think_answer_set_text", || {
        // SAFETY: the caller's contract on `answer` and `text`.
        let (a, text) = unsafe { (clove_think_answer::borrow_mut(answer, "answer")?, str_arg(text, "text")?) };
        a.answer.text = text.to_string();
        a.has_text = true;
        Ok(())
    })
}

/// Sets the name of the model that answered (default: the one asked for).
///
/// Thread-safety: the handler's thread, during the handler's call.
///
/// # Safety
/// `answer` is NULL or the handler's answer; `model` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn clove_think_answer_set_model(
    answer: *mut clove_think_answer,
    model: *const c_char,
) -> clove_status {
    guard("clove_think_answer_set_model", || {
        // SAFETY: the caller's contract on `answer` and `model`.
        let (a, model) = unsafe { (clove_think_answer::borrow_mut(answer, "answer")?, str_arg(model, "model")?) };
        a.answer.model = model.to_string();
        Ok(())
    })
}

/// Sets the tokens the answer cost, which count against the agent's quota.
///
/// Thread-safety: the handler's thread, during the handler's call.
///
/// # Safety
/// `answer` is NULL or the handler's answer.
#[no_mangle]
pub unsafe extern "C" fn clove_think_answer_set_usage(
    answer: *mut clove_think_answer,
    input_tokens: u64,
    output_tokens: u64,
) -> clove_status {
    guard("clove_think_answer_set_usage", || {
        // SAFETY: the caller's contract on `answer`.
        let a = unsafe { clove_think_answer::borrow_mut(answer, "answer") }?;
        (a.answer.input_tokens, a.answer.output_tokens) = (input_tokens, output_tokens);
        Ok(())
    })
}

/// Fails the THINK: the agent receives `message` as an `io` error.
///
/// Thread-safety: the handler's thread, during the handler's call.
///
/// # Safety
/// `answer` is NULL or the handler's answer; `message` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn clove_think_answer_set_error(
    answer: *mut clove_think_answer,
    message: *const c_char,
) -> clove_status {
    guard("clove_think_answer_set_error", || {
        // SAFETY: the caller's contract on `answer` and `message`.
        let (a, message) = unsafe { (clove_think_answer::borrow_mut(answer, "answer")?, str_arg(message, "message")?) };
        a.error = Some(message.to_string());
        Ok(())
    })
}

/// Answers a THINK: reads `request`, fills `answer` with the setters, and returns. Called on one
/// of the runtime's THINK worker threads (never the reactor thread), possibly on several at once,
/// with the `user_data` given at registration. It may call other `clove_runtime_*` functions, but
/// not `clove_runtime_set_think_handler` nor `clove_runtime_free`.
pub type clove_think_handler = Option<
    unsafe extern "C" fn(request: *const clove_think_request, answer: *mut clove_think_answer, user_data: *mut c_void),
>;

/// A C handler and its `user_data`, called from worker threads.
struct CHandler {
    call: unsafe extern "C" fn(*const clove_think_request, *mut clove_think_answer, *mut c_void),
    user_data: *mut c_void,
}

// SAFETY: Clove never reads or writes through `user_data`; it hands it back to `call` on worker
// threads, several at once. The header requires of the caller that `call` may run on any thread,
// concurrently, with this `user_data`, which is what `Send` and `Sync` ask of the pair.
unsafe impl Send for CHandler {}
// SAFETY: as above; a shared `&CHandler` only calls `call`.
unsafe impl Sync for CHandler {}

/// The strings of a call, made ready for C; they live as long as the request that points at them.
struct CStrings {
    agent_name: CString,
    prompt: CString,
    system_instruction: Option<CString>,
    model: Option<CString>,
    image_mime_type: Option<CString>,
    thinking_level: Option<CString>,
}

impl CStrings {
    fn new(call: &ThinkCall) -> Result<CStrings, String> {
        let c = |what: &str, s: &str| {
            CString::new(s).map_err(|_| format!("the {what} holds a NUL byte, which a C handler cannot read"))
        };
        let opt = |what: &str, s: Option<&str>| s.map(|s| c(what, s)).transpose();
        Ok(CStrings {
            agent_name: c("agent name", &call.agent_name)?,
            prompt: c("prompt", &call.prompt)?,
            system_instruction: opt("system instruction", call.system_instruction.as_deref())?,
            model: opt("model", call.model.as_deref())?,
            image_mime_type: opt("image type", call.image.as_ref().map(|i| i.mime_type.as_str()))?,
            thinking_level: opt("thinking level", call.thinking_level.as_deref())?,
        })
    }
}

fn or_null(s: &Option<CString>) -> *const c_char {
    s.as_ref().map_or(ptr::null(), |s| s.as_ptr())
}

impl CHandler {
    fn answer(&self, call: &ThinkCall) -> Result<ThinkAnswer, String> {
        let strings = CStrings::new(call)?;
        let image = call.image.as_ref().map(|i| i.data.as_slice());
        let request = clove_think_request {
            agent_id: call.agent_id.0,
            agent_name: strings.agent_name.as_ptr(),
            prompt: strings.prompt.as_ptr(),
            system_instruction: or_null(&strings.system_instruction),
            model: or_null(&strings.model),
            image: image.map_or(ptr::null(), <[u8]>::as_ptr),
            image_len: image.map_or(0, <[u8]>::len),
            image_mime_type: or_null(&strings.image_mime_type),
            has_temperature: call.temperature.is_some(),
            temperature: call.temperature.unwrap_or(0.0),
            max_tokens: call.max_tokens.unwrap_or(0),
            thinking_level: or_null(&strings.thinking_level),
        };
        let answer = clove_think_answer::into_handle(HostAnswer::default());
        // SAFETY: `call` came from C as a function of this signature; `request` and every string
        // and byte it points to live until after the call; `answer` is a live handle that only this
        // call uses; `user_data` is passed back untouched, as the caller asked.
        unsafe { (self.call)(&request, answer, self.user_data) };
        // SAFETY: `answer` came from `into_handle` above and the handler may not keep it (the
        // header says it is valid only during the call), so nothing else borrows or frees it.
        let filled = unsafe { clove_think_answer::borrow_mut(answer, "answer") }.map(std::mem::take);
        // SAFETY: as above; it is freed once, here.
        unsafe { clove_think_answer::free(answer) };
        let filled = filled.map_err(|_| "the answer handle was lost".to_string())?;
        match (filled.error, filled.has_text) {
            (Some(error), _) => Err(error),
            (None, true) => Ok(filled.answer),
            (None, false) => Err("the handler set neither a text nor an error".into()),
        }
    }
}

/// Registers `handler` to answer every THINK instead of the configured provider, called with
/// `user_data`; NULL removes it. Once this returns, the previous handler is not running and will
/// not be called again, so its `user_data` may be released; `clove_runtime_free` does the same.
/// Called from inside a handler it fails with `CLOVE_STATUS_CONFLICT`.
///
/// Thread-safety: any thread but a THINK worker's, concurrently with other calls on the runtime.
/// It waits for the calls of the previous handler still running.
///
/// # Safety
/// `rt` is NULL or a live runtime. `handler` is NULL or a function safe to call on any thread, on
/// several at once, with `user_data`, until it is replaced or the runtime freed.
#[no_mangle]
pub unsafe extern "C" fn clove_runtime_set_think_handler(
    rt: *mut clove_runtime,
    handler: clove_think_handler,
    user_data: *mut c_void,
) -> clove_status {
    guard("clove_runtime_set_think_handler", || {
        // SAFETY: the caller's contract on `rt`.
        let rt = unsafe { clove_runtime::borrow(rt, "rt") }?;
        let handler = handler.map(|call| -> ThinkHandler {
            let c = CHandler { call, user_data };
            Arc::new(move |think: &ThinkCall| c.answer(think))
        });
        Ok(rt.set_think_handler(handler)?)
    })
}
