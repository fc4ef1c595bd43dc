//! HTTP on an agent's behalf: the URL and every redirect are checked against the agent's allowlist
//! (redirects are followed here, one hop at a time, never by the client library), addresses are
//! checked by the [`guard`](super::guard), and the body is kept up to a cap.

use std::io::Read;
use std::time::{Duration, Instant};

use ureq::http::{header, Method, StatusCode, Uri};

use super::guard::{self, GuardedResolver};
use super::NetError;
use crate::policy::AgentPolicy;
use crate::protocol::{HttpReply, HttpRequest, KeyValue};

pub(super) const DEFAULT_TIMEOUT_MS: u64 = 30_000;
pub(super) const MAX_TIMEOUT_MS: u64 = 300_000;
pub(super) const MAX_REDIRECTS: u32 = 5;
pub(super) const DEFAULT_MAX_RESPONSE: usize = 1 << 20;

/// Headers the runtime sets itself. `host` above all: it must name the host the allowlist checked.
const RESERVED_HEADERS: &[&str] = &["host", "content-length", "transfer-encoding", "connection"];
/// Headers that carry credentials, dropped when a redirect leaves the origin they were sent to.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

/// A URL as the allowlist judges it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Endpoint {
    pub uri: Uri,
    pub https: bool,
    /// Lower case, IPv6 without brackets.
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, NetError> {
        let bad = |why: &str| NetError::BadUrl { url: url.to_string(), why: why.to_string() };
        let uri: Uri = url.parse().map_err(|e: ureq::http::uri::InvalidUri| bad(&e.to_string()))?;
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            _ => return Err(bad("only http:// and https:// URLs are served")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not accepted; send an authorization header"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Endpoint { uri, https, host, port })
    }

    pub fn default_port(&self) -> u16 {
        if self.https {
            443
        } else {
            80
        }
    }

    fn same_origin(&self, other: &Endpoint) -> bool {
        (self.https, &self.host, self.port) == (other.https, &other.host, other.port)
    }

    /// Where a redirect's `Location` points, resolved against this URL.
    fn join(&self, location: &str) -> Result<Endpoint, NetError> {
        let location = location.split('#').next().unwrap_or_default();
        let scheme = if self.https { "https" } else { "http" };
        let authority = self.uri.authority().map_or("", |a| a.as_str());
        let absolute = if location.contains("://") {
            location.to_string()
        } else if let Some(rest) = location.strip_prefix("//") {
            format!("{scheme}://{rest}")
        } else if location.starts_with('/') {
            format!("{scheme}://{authority}{location}")
        } else {
            let path = self.uri.path();
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            format!("{scheme}://{authority}{dir}{location}")
        };
        Endpoint::parse(&absolute)
    }

    fn checked_by(&self, policy: &AgentPolicy, method: &Method) -> Result<(), crate::policy::Denial> {
        policy.check_http(method.as_str(), &self.host, self.port, self.default_port())
    }
}

/// An HTTP request that passed the gate, as a worker runs it.
pub(super) struct HttpJob {
    pub endpoint: Endpoint,
    pub method: Method,
    pub headers: Vec<KeyValue>,
    pub body: Vec<u8>,
    pub max_response_bytes: usize,
    /// The caller's policy, for the redirects.
    pub policy: AgentPolicy,
    pub timeout: Duration,
    /// What a reply may take in a frame: headers, URL and body together.
    pub room: usize,
}

impl HttpJob {
    /// Checks a request at the gate: its URL, method and headers, against `policy`.
    pub fn new(request: HttpRequest, policy: &AgentPolicy, room: usize) -> Result<HttpJob, NetError> {
        let endpoint = Endpoint::parse(&request.url)?;
        let name = if request.method.is_empty() { "GET".to_string() } else { request.method.to_ascii_uppercase() };
        let method =
            Method::from_bytes(name.as_bytes()).map_err(|_| NetError::Invalid(format!("bad http method {name:?}")))?;
        if let Some(kv) =
            request.headers.iter().find(|kv| RESERVED_HEADERS.iter().any(|r| kv.key.eq_ignore_ascii_case(r)))
        {
            return Err(NetError::Invalid(format!("header {:?} is set by the runtime", kv.key)));
        }
        endpoint.checked_by(policy, &method)?;
        let timeout_ms = request.timeout_ms.map_or(DEFAULT_TIMEOUT_MS, u64::from).clamp(1, MAX_TIMEOUT_MS);
        Ok(HttpJob {
            endpoint,
            method,
            headers: request.headers,
            body: request.body,
            max_response_bytes: request.max_response_bytes.map_or(DEFAULT_MAX_RESPONSE, |m| m as usize),
            policy: policy.clone(),
            timeout: Duration::from_millis(timeout_ms),
            room,
        })
    }
}

/// The client agents' requests go through: no proxy from the environment (it would resolve names
/// itself, past the guard), no redirects (followed by [`fetch`]), statuses as replies.
pub(super) fn client(refuse_non_public: bool) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .proxy(None)
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(concat!("clove/", env!("CARGO_PKG_VERSION")))
        .build();
    let connector = ureq::unversioned::transport::DefaultConnector::default();
    ureq::Agent::with_parts(config, connector, GuardedResolver { refuse_non_public })
}

/// Runs the request, following redirects that the policy allows.
pub(super) fn fetch(client: &ureq::Agent, job: HttpJob) -> Result<HttpReply, NetError> {
    let started = Instant::now();
    let HttpJob { mut endpoint, mut method, mut headers, mut body, max_response_bytes, policy, timeout, room } = job;
    for hop in 0..=MAX_REDIRECTS {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(timed_out(&endpoint, timeout));
        }
        let response =
            send(client, &method, &endpoint, &headers, &body, left).map_err(|e| failed(e, &endpoint, timeout))?;
        let location = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok());
        let (Some(next_method), Some(location)) = (redirected_method(response.status(), &method), location) else {
            return read_reply(response, &endpoint, max_response_bytes, room, timeout);
        };
        if hop == MAX_REDIRECTS {
            return Err(NetError::TooManyRedirects(MAX_REDIRECTS));
        }
        let next = endpoint.join(location)?;
        next.checked_by(&policy, &next_method)
            .map_err(|denial| NetError::RedirectDenied { to: next.uri.to_string(), denial })?;
        if next_method != method {
            body.clear();
            headers.retain(|kv| !kv.key.eq_ignore_ascii_case("content-type"));
        }
        if !next.same_origin(&endpoint) {
            headers.retain(|kv| !CREDENTIAL_HEADERS.iter().any(|c| kv.key.eq_ignore_ascii_case(c)));
        }
        (endpoint, method) = (next, next_method);
    }
    Err(NetError::TooManyRedirects(MAX_REDIRECTS))
}

/// The method a redirect continues with, as browsers do: 303 (and 301/302 after a POST) turns into
/// a GET without body, 307 and 308 keep both; `None` when `status` is not a redirect.
fn redirected_method(status: StatusCode, method: &Method) -> Option<Method> {
    match status.as_u16() {
        301 | 302 if *method == Method::POST => Some(Method::GET),
        303 if *method != Method::HEAD => Some(Method::GET),
        301 | 302 | 303 | 307 | 308 => Some(method.clone()),
        _ => None,
    }
}

fn send(
    client: &ureq::Agent,
    method: &Method,
    endpoint: &Endpoint,
    headers: &[KeyValue],
    body: &[u8],
    left: Duration,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let mut builder = ureq::http::Request::builder().method(method.clone()).uri(endpoint.uri.clone());
    for kv in headers {
        builder = builder.header(kv.key.as_str(), kv.value.as_str());
    }
    let expects_body = [Method::POST, Method::PUT, Method::PATCH].contains(method);
    if body.is_empty() && !expects_body {
        let request = builder.body(())?;
        client.run(client.configure_request(request).timeout_global(Some(left)).build())
    } else {
        let request = builder.body(body)?;
        client.run(client.configure_request(request).timeout_global(Some(left)).build())
    }
}

fn read_reply(
    mut response: ureq::http::Response<ureq::Body>,
    endpoint: &Endpoint,
    max_response_bytes: usize,
    room: usize,
    timeout: Duration,
) -> Result<HttpReply, NetError> {
    let headers: Vec<KeyValue> = response
        .headers()
        .iter()
        .map(|(name, value)| KeyValue {
            key: name.as_str().to_string(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        })
        .collect();
    let url = endpoint.uri.to_string();
    // Each string costs its bytes plus a length prefix of at most 5 bytes in the reply.
    let taken: usize = url.len() + headers.iter().map(|kv| kv.key.len() + kv.value.len() + 10).sum::<usize>();
    let cap = max_response_bytes.min(room.saturating_sub(taken));
    let mut body = Vec::new();
    let read = response.body_mut().as_reader().take(cap as u64 + 1).read_to_end(&mut body);
    read.map_err(|e| failed(ureq::Error::Io(e), endpoint, timeout))?;
    let truncated = body.len() > cap;
    body.truncate(cap);
    Ok(HttpReply { status: response.status().as_u16(), headers, body, truncated, url })
}

fn timed_out(endpoint: &Endpoint, timeout: Duration) -> NetError {
    NetError::Timeout { what: format!("http request to {}", endpoint.uri), ms: timeout.as_millis() as u64 }
}

/// What a failed exchange means for the agent.
fn failed(error: ureq::Error, endpoint: &Endpoint, timeout: Duration) -> NetError {
    let error = match guard::refusal(error) {
        Ok(refused) => return refused,
        Err(other) => other,
    };
    // ureq hands its own errors through `io::Error` while reading a body.
    let error = match error {
        ureq::Error::Io(io) if io.get_ref().is_some_and(|e| e.is::<ureq::Error>()) => {
            match io.into_inner().map(|e| e.downcast::<ureq::Error>()) {
                Some(Ok(inner)) => *inner,
                _ => ureq::Error::ConnectionFailed,
            }
        }
        other => other,
    };
    match error {
        ureq::Error::Timeout(_) => timed_out(endpoint, timeout),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => timed_out(endpoint, timeout),
        ureq::Error::Http(e) => NetError::Invalid(format!("bad header: {e}")),
        ureq::Error::HostNotFound => {
            NetError::Transport { url: endpoint.uri.to_string(), why: "host not found".into() }
        }
        other => NetError::Transport { url: endpoint.uri.to_string(), why: other.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_what_the_allowlist_judges() {
        let e = Endpoint::parse("https://API.Example.com/v1?q=1").unwrap();
        assert_eq!((e.https, e.host.as_str(), e.port), (true, "api.example.com", 443));
        let e = Endpoint::parse("http://[::1]:8080/x").unwrap();
        assert_eq!((e.https, e.host.as_str(), e.port), (false, "::1", 8080));
        for bad in ["ftp://example.com/", "/relative", "http://user:pw@example.com/", "http:///nohost", "not a url"] {
            assert!(matches!(Endpoint::parse(bad), Err(NetError::BadUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn redirect_locations_resolve_against_the_current_url() {
        let base = Endpoint::parse("http://a.example:81/dir/page?x=1").unwrap();
        let join = |l: &str| base.join(l).unwrap().uri.to_string();
        assert_eq!(join("https://b.example/p"), "https://b.example/p");
        assert_eq!(join("//c.example/q"), "http://c.example/q");
        assert_eq!(join("/root?y=2#frag"), "http://a.example:81/root?y=2");
        assert_eq!(join("other"), "http://a.example:81/dir/other");
    }

    #[test]
    fn redirects_change_the_method_as_browsers_do() {
        let at = |code: u16, m: Method| redirected_method(StatusCode::from_u16(code).unwrap(), &m);
        assert_eq!(at(302, Method::POST), Some(Method::GET));
        assert_eq!(at(301, Method::PUT), Some(Method::PUT));
        assert_eq!(at(303, Method::DELETE), Some(Method::GET));
        assert_eq!(at(303, Method::HEAD), Some(Method::HEAD));
        assert_eq!(at(307, Method::POST), Some(Method::POST));
        assert_eq!(at(308, Method::PATCH), Some(Method::PATCH));
        assert_eq!(at(200, Method::GET), None);
        assert_eq!(at(304, Method::GET), None);
    }
}
