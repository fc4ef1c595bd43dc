//! Why an HTTP or THINK request failed, each with the [`ErrorCode`] the agent sees.

use std::net::IpAddr;

use crate::policy::Denial;
use crate::protocol::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Denied(#[from] Denial),
    #[error("redirect to {to} refused: {denial}")]
    RedirectDenied { to: String, denial: Denial },
    #[error(
        "permission denied: {host} resolves to {ip}, a {kind} address, and this runtime refuses non-public addresses"
    )]
    NonPublicAddress { host: String, ip: IpAddr, kind: &'static str },
    #[error("invalid url {url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("{what} timed out after {ms} ms")]
    Timeout { what: String, ms: u64 },
    #[error("{url}: {why}")]
    Transport { url: String, why: String },
    #[error("more than {0} redirects")]
    TooManyRedirects(u32),
    #[error("no LLM provider is configured: set GEMINI_API_KEY, ANTHROPIC_API_KEY, OPENAI_API_KEY or OPENAI_BASE_URL where the runtime starts, configure one through the API, or register a host think handler")]
    NoProvider,
    #[error("{provider} answered HTTP {status}: {message}")]
    Provider { provider: &'static str, status: u16, message: String },
    #[error("{provider} sent a reply that does not parse: {why}")]
    BadProviderReply { provider: &'static str, why: String },
    #[error("the host think handler failed: {0}")]
    Host(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0} panicked")]
    Panicked(&'static str),
}

impl NetError {
    pub fn code(&self) -> ErrorCode {
        match self {
            NetError::Denied(Denial::Invalid(_) | Denial::CommandSyntax(_)) => ErrorCode::InvalidArgument,
            NetError::Denied(_) | NetError::RedirectDenied { .. } | NetError::NonPublicAddress { .. } => {
                ErrorCode::PermissionDenied
            }
            NetError::BadUrl { .. } | NetError::Invalid(_) => ErrorCode::InvalidArgument,
            NetError::Timeout { .. } => ErrorCode::Timeout,
            NetError::Transport { .. }
            | NetError::Provider { .. }
            | NetError::BadProviderReply { .. }
            | NetError::Host(_) => ErrorCode::Io,
            NetError::TooManyRedirects(_) | NetError::LimitExceeded(_) => ErrorCode::LimitExceeded,
            NetError::NoProvider => ErrorCode::Unsupported,
            NetError::Panicked(_) => ErrorCode::Internal,
        }
    }
}
