//! HTTP and THINK: requests that wait on the network. The reactor checks each one at the gate
//! (policy, quota, limits), hands it to a worker thread, and delivers what the worker reports back
//! through the command channel and the waker: as the reply to the request, or once into the
//! caller's ASYNC_POLL queue. Workers never touch the agent table; the reactor never waits on them.

mod error;
mod guard;
mod http;
pub(super) mod llm;
mod workers;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

use mio::Waker;

pub use error::NetError;
pub(super) use llm::LlmUsage;
pub use llm::{ProviderConfig, ProviderKind, ThinkAnswer, ThinkCall, ThinkHandler};

use super::bus::{Audience, EventType};
use super::ids::SlotMap;
use super::reactor::{Reactor, Timer};
use super::{AgentId, Command, Result, RuntimeError};
use crate::protocol::{
    frame, Accepted, AsyncResult, ErrorCode, ErrorReply, HttpReply, HttpRequest, Opcode, ThinkReply, ThinkRequest,
};
use http::HttpJob;
use llm::dispatch::{ThinkDispatch, ThinkLimits};
use llm::host::HostProvider;
use workers::{Job, WorkerPool};

/// Requests of one agent that may be in flight at once, HTTP and THINK together.
const MAX_IN_FLIGHT_PER_AGENT: usize = 16;
/// HTTP requests that may wait for a worker, from all agents together.
const HTTP_QUEUE_CAPACITY: usize = 256;
/// Room kept in a reply frame for everything but the body and headers of an HTTP reply.
const REPLY_SLACK: usize = 256;

/// The order in which waiting THINK calls reach the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkOrder {
    /// The agent served the fewest tokens so far goes next (virtual token counters).
    Fair,
    /// First come, first served, whoever asks.
    Arrival,
}

/// Options of HTTP and THINK.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Refuse agents' HTTP to addresses that are not public (loopback, private, link-local, ...),
    /// checked on every address a name resolves to (default `true`).
    pub refuse_non_public: bool,
    /// Threads serving HTTP (default 4).
    pub http_workers: usize,
    /// THINK calls the provider sees at once (default 4).
    pub think_workers: usize,
    /// Which waiting THINK goes next (default [`ThinkOrder::Fair`]).
    pub think_order: ThinkOrder,
    /// THINK calls the provider may start per minute (default: no cap).
    pub think_requests_per_min: Option<u32>,
    /// Tokens the provider may be asked for per minute, estimated at start and corrected by what
    /// each call used (default: no cap).
    pub think_tokens_per_min: Option<u64>,
    /// Where THINK goes when no host handler is registered; default [`ProviderConfig::from_env`].
    pub llm: Option<ProviderConfig>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            refuse_non_public: true,
            http_workers: 4,
            think_workers: 4,
            think_order: ThinkOrder::Fair,
            think_requests_per_min: None,
            think_tokens_per_min: None,
            llm: ProviderConfig::from_env(),
        }
    }
}

/// Where a request waits for a worker.
#[derive(Debug, Clone, Copy)]
enum Route {
    Http,
    /// The fair queue, charged this estimate until the call reports what it used.
    Think {
        input_tokens: u64,
    },
}

impl Route {
    fn opcode(self) -> Opcode {
        match self {
            Route::Http => Opcode::HTTP,
            Route::Think { .. } => Opcode::THINK,
        }
    }
}

/// A THINK's input, estimated before the provider counts it: about four bytes a token, and a
/// flat charge for an image.
fn estimate_input_tokens(req: &ThinkRequest) -> u64 {
    let text = req.prompt.len() + req.system_instruction.as_ref().map_or(0, String::len);
    (text as u64).div_ceil(4) + if req.image.is_some() { 1_000 } else { 0 }
}

/// An encoded reply, or the error the agent gets instead.
type Encoded = std::result::Result<Vec<u8>, ErrorReply>;

/// What a worker reports.
pub(super) enum Outcome {
    Http(std::result::Result<HttpReply, NetError>),
    Think(std::result::Result<ThinkReply, NetError>),
}

/// A request handed to a worker, until its result is delivered.
struct InFlight {
    agent: AgentId,
    request_id: u32,
    run_async: bool,
    started: Instant,
    /// Its connection closed: the result has nobody to go to (THINK usage is still charged).
    abandoned: bool,
    /// What the audit entry says about it besides the outcome.
    audit: serde_json::Value,
}

/// The HTTP clients, each with its own connection pool: one for agents' requests (guarded), one
/// for the providers the host configured.
#[derive(Clone)]
struct Clients {
    agents: ureq::Agent,
    providers: ureq::Agent,
}

/// The worker threads and clients, started with the first request that needs them.
struct Started {
    http: WorkerPool,
    think: ThinkDispatch,
    clients: Clients,
}

pub(super) struct NetService {
    /// Its `llm` is taken out into `provider`, which THINK workers share.
    config: NetConfig,
    host: Arc<HostProvider>,
    provider: Option<Arc<ProviderConfig>>,
    outbox: Sender<Command>,
    waker: Arc<Waker>,
    started: Option<Started>,
    in_flight: SlotMap<InFlight>,
}

impl NetService {
    pub fn new(mut config: NetConfig, outbox: Sender<Command>, waker: Arc<Waker>) -> NetService {
        let provider = config.llm.take().map(Arc::new);
        NetService {
            config,
            host: Arc::default(),
            provider,
            outbox,
            waker,
            started: None,
            in_flight: SlotMap::default(),
        }
    }

    /// The host handler's slot, which [`Runtime::set_think_handler`](super::Runtime) fills.
    pub fn host(&self) -> Arc<HostProvider> {
        Arc::clone(&self.host)
    }

    fn started(&mut self) -> Result<&mut Started> {
        if self.started.is_none() {
            let io = |e| RuntimeError::io("starting the HTTP and THINK workers", e);
            let limits = ThinkLimits {
                concurrency: self.config.think_workers,
                order: self.config.think_order,
                requests_per_min: self.config.think_requests_per_min,
                tokens_per_min: self.config.think_tokens_per_min,
            };
            self.started = Some(Started {
                http: WorkerPool::start("clove-http", self.config.http_workers, HTTP_QUEUE_CAPACITY).map_err(io)?,
                think: ThinkDispatch::start(limits).map_err(io)?,
                clients: Clients { agents: http::client(self.config.refuse_non_public), providers: llm::client() },
            });
        }
        self.started.as_mut().ok_or(RuntimeError::Stopped)
    }

    /// Queues a job: an HTTP request on its pool in arrival order, a THINK in the fair queue.
    /// Returns when the fair queue wants to be looked at again, if it does.
    fn submit(&mut self, key: u64, agent: AgentId, route: Route, job: Job) -> Result<Option<u64>> {
        let started = self.started()?;
        let submitted = match route {
            Route::Think { input_tokens } => started.think.submit(key, agent, input_tokens, job),
            Route::Http => started.http.submit(job).map(|()| None).map_err(|_| {
                NetError::LimitExceeded(format!("{HTTP_QUEUE_CAPACITY} http requests are already waiting"))
            }),
        };
        Ok(submitted?)
    }

    /// Requests of `agent` whose results will still be delivered.
    fn pending(&self, agent: AgentId, run_async: Option<bool>) -> usize {
        let mine = |job: &&InFlight| job.agent == agent && !job.abandoned;
        self.in_flight
            .iter()
            .map(|(_, j)| j)
            .filter(mine)
            .filter(|j| run_async.is_none_or(|a| j.run_async == a))
            .count()
    }

    /// Async requests of `agent` in flight, for the ASYNC_POLL limit.
    pub fn pending_async(&self, agent: AgentId) -> usize {
        self.pending(agent, Some(true))
    }

    /// Interrupts the requests in flight, waits for the workers (and so for any host handler still
    /// running), and drops what was queued.
    pub fn shutdown(&mut self) {
        if let Some(mut started) = self.started.take() {
            started.clients.agents.shutdown();
            started.clients.providers.shutdown();
            started.http.shutdown();
            started.think.shutdown();
        }
        let _ = self.host.set(None);
    }
}

impl Reactor {
    /// HTTP at the gate: URL, method and headers against the caller's policy, then to a worker.
    pub(super) fn http(&mut self, id: AgentId, request_id: u32, req: HttpRequest) -> Result<Option<Accepted>> {
        let agent = self.agents.get(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        let room = (self.config.max_payload as usize).saturating_sub(REPLY_SLACK);
        let run_async = req.run_async;
        let job = HttpJob::new(req, &agent.policy, room)?;
        let audit = serde_json::json!({ "method": job.method.as_str(), "url": job.endpoint.uri.to_string() });
        self.dispatch_net(id, request_id, run_async, audit, Route::Http, move |clients| {
            Outcome::Http(http::fetch(&clients.agents, job))
        })
    }

    /// THINK at the gate: the think right, a provider to ask, the quota, then to the dispatch point.
    pub(super) fn think(&mut self, id: AgentId, request_id: u32, req: ThinkRequest) -> Result<Option<Accepted>> {
        let agent = self.agents.get(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        agent.policy.check_think()?;
        if !self.net.host.is_set() && self.net.provider.is_none() {
            return Err(NetError::NoProvider.into());
        }
        if req.prompt.is_empty() {
            return Err(NetError::Invalid("the prompt is empty".into()).into());
        }
        if let Some(image) = &req.image {
            if !image.mime_type.starts_with("image/") || image.data.is_empty() {
                return Err(NetError::Invalid(format!(
                    "an image needs bytes and an image/* type, not {:?}",
                    image.mime_type
                ))
                .into());
            }
        }
        let quota = agent.policy.llm_quota();
        let used = agent.llm_usage;
        if let Some(max) = quota.max_calls.filter(|&max| used.calls >= max) {
            return Err(NetError::LimitExceeded(format!("llm quota: {} of {max} calls used", used.calls)).into());
        }
        let tokens_left = quota.max_tokens.map(|max| max.saturating_sub(used.tokens));
        if let (Some(0), Some(max)) = (tokens_left, quota.max_tokens) {
            return Err(NetError::LimitExceeded(format!("llm quota: {} of {max} tokens used", used.tokens)).into());
        }
        let left = tokens_left.map(|t| u32::try_from(t).unwrap_or(u32::MAX));
        let route = Route::Think { input_tokens: estimate_input_tokens(&req) };
        let call = ThinkCall {
            agent_id: id,
            agent_name: agent.name.clone(),
            prompt: req.prompt,
            image: req.image,
            system_instruction: req.system_instruction,
            temperature: req.temperature_milli.map(|t| f64::from(t) / 1000.0),
            model: req.model,
            max_tokens: match (req.max_tokens, left) {
                (Some(asked), Some(left)) => Some(asked.min(left)),
                (asked, left) => asked.or(left),
            },
            thinking_level: req.thinking_level,
        };
        let audit = serde_json::json!({ "model": call.model });
        let (host, provider) = (self.net.host(), self.net.provider.clone());
        let accepted = self.dispatch_net(id, request_id, req.run_async, audit, route, move |clients| {
            Outcome::Think(llm::think(&host, &clients.providers, provider.as_deref(), &call))
        })?;
        // A call counts when it is admitted, so calls in flight count against `max_calls` too.
        if let Some(agent) = self.agents.get_mut(id) {
            agent.llm_usage.calls += 1;
        }
        Ok(accepted)
    }

    /// Hands `work` to a worker after the per-agent and async limits; it reports through the inbox.
    fn dispatch_net(
        &mut self,
        id: AgentId,
        request_id: u32,
        run_async: bool,
        audit: serde_json::Value,
        route: Route,
        work: impl FnOnce(&Clients) -> Outcome + Send + 'static,
    ) -> Result<Option<Accepted>> {
        let op = route.opcode();
        if self.net.pending(id, None) >= MAX_IN_FLIGHT_PER_AGENT {
            return Err(NetError::LimitExceeded(format!(
                "{MAX_IN_FLIGHT_PER_AGENT} http and think requests of this agent are in flight"
            ))
            .into());
        }
        if run_async {
            self.check_async_room(id)?;
        }
        let clients = self.net.started()?.clients.clone();
        let in_flight = InFlight { agent: id, request_id, run_async, started: Instant::now(), abandoned: false, audit };
        let key = self.net.in_flight.insert_with(|_| in_flight);
        let (outbox, waker) = (self.net.outbox.clone(), Arc::clone(&self.net.waker));
        let job: Job = Box::new(move || {
            let outcome = catch_unwind(AssertUnwindSafe(|| work(&clients))).unwrap_or(match op {
                Opcode::THINK => Outcome::Think(Err(NetError::Panicked("the think request"))),
                _ => Outcome::Http(Err(NetError::Panicked("the http request"))),
            });
            // A reactor that stopped has dropped its inbox: nobody is left to tell.
            if outbox.send(Command::NetDone(key, Box::new(outcome))).is_ok() {
                let _ = waker.wake();
            }
        });
        match self.net.submit(key, id, route, job) {
            Ok(recheck) => self.arm_think_wakeup(recheck),
            Err(e) => {
                self.net.in_flight.remove(key);
                return Err(e);
            }
        }
        Ok(run_async.then_some(Accepted { request_id }))
    }

    /// Looks at the fair queue again in `after_ms`, when a rate window reopens.
    fn arm_think_wakeup(&mut self, after_ms: Option<u64>) {
        self.timers.retain(|(_, t)| *t != Timer::ThinkWakeup);
        if let Some(ms) = after_ms {
            self.timers.insert((Instant::now() + std::time::Duration::from_millis(ms), Timer::ThinkWakeup));
        }
    }

    /// A rate window reopened: the THINK calls that fit now start.
    pub(super) fn think_wakeup(&mut self) {
        let recheck = self.net.started.as_mut().and_then(|s| s.think.start_ready());
        self.arm_think_wakeup(recheck);
    }

    /// A worker's result: charged, audited and delivered, unless its connection is gone.
    pub(super) fn net_done(&mut self, key: u64, outcome: Outcome) {
        if let Outcome::Think(result) = &outcome {
            // Charged what it used (nothing, when it failed), which lets the next call start.
            let used = result
                .as_ref()
                .map_or(Default::default(), |r| crate::fair::Tokens { input: r.input_tokens, output: r.output_tokens });
            let recheck = self.net.started.as_mut().and_then(|s| s.think.finish(key, used));
            self.arm_think_wakeup(recheck);
        }
        let Some(mut job) = self.net.in_flight.remove(key) else { return };
        let (op, result) = self.settle(&mut job, outcome);
        self.note_result(job.agent, job.request_id, result.as_deref().map_err(Clone::clone));
        let denied = result.as_ref().err().filter(|e| e.code == ErrorCode::PermissionDenied as u16);
        if let Some(e) = denied {
            // Refused on the worker (a redirect, an address): a blocked syscall like any other.
            let data = serde_json::json!({ "agent_id": job.agent.0, "syscall": op.name(), "error": e.message });
            self.emit(job.agent, EventType::SyscallBlocked, data, Audience::ObserversOf(job.agent));
        }
        if let Err(e) = &result {
            job.audit["error"] = serde_json::json!(e.message);
        }
        let category = if denied.is_some() { "security" } else { "network" };
        self.record(job.agent, category, op.name(), result.is_ok(), std::mem::take(&mut job.audit));
        if !job.abandoned {
            self.deliver_net(&job, op, result);
        }
    }

    /// Charges a THINK's tokens, notes the outcome in the job's audit details, and encodes the
    /// reply, refusing one that does not fit a frame.
    fn settle(&mut self, job: &mut InFlight, outcome: Outcome) -> (Opcode, Encoded) {
        let details = &mut job.audit;
        details["duration_ms"] = serde_json::json!(job.started.elapsed().as_millis() as u64);
        let (op, result) = match outcome {
            Outcome::Http(result) => {
                if let Ok(reply) = &result {
                    details["status"] = serde_json::json!(reply.status);
                    details["bytes"] = serde_json::json!(reply.body.len());
                    details["truncated"] = serde_json::json!(reply.truncated);
                    if details["url"] != reply.url.as_str() {
                        details["final_url"] = serde_json::json!(reply.url);
                    }
                }
                (Opcode::HTTP, result.map(|r| crate::protocol::encode(&r)))
            }
            Outcome::Think(result) => {
                if let Ok(reply) = &result {
                    if let Some(agent) = self.agents.get_mut(job.agent) {
                        agent.llm_usage.tokens += reply.input_tokens + reply.output_tokens;
                    }
                    details["provider"] = serde_json::json!(reply.provider);
                    details["model"] = serde_json::json!(reply.model);
                    details["input_tokens"] = serde_json::json!(reply.input_tokens);
                    details["output_tokens"] = serde_json::json!(reply.output_tokens);
                }
                (Opcode::THINK, result.map(|r| crate::protocol::encode(&r)))
            }
        };
        // An HTTP body is capped to fit; an answer from an LLM or the host handler may not fit.
        let room = (self.config.max_payload as usize).saturating_sub(REPLY_SLACK);
        let result = result.and_then(|payload| match payload.len() {
            len if len > room => Err(NetError::LimitExceeded(format!(
                "the {} answer of {len} bytes does not fit one reply (at most {room})",
                op.name()
            ))),
            _ => Ok(payload),
        });
        (op, result.map_err(|e| RuntimeError::from(e).to_reply()))
    }

    /// The reply frame now, or the result into the caller's ASYNC_POLL queue.
    fn deliver_net(&mut self, job: &InFlight, op: Opcode, result: Encoded) {
        if job.run_async {
            let (error, payload) = match result {
                Ok(payload) => (None, payload),
                Err(e) => (Some(e), Vec::new()),
            };
            let request_id = job.request_id;
            if let Some(agent) = self.agents.get_mut(job.agent) {
                agent.async_results.push_back(AsyncResult { request_id, opcode: op as u8, error, payload });
            }
            return;
        }
        let mut out = Vec::new();
        match result {
            Ok(payload) => frame::write_frame(&mut out, op as u8, frame::flags::REPLY, job.request_id, &payload),
            Err(e) => crate::protocol::write_error(&mut out, op as u8, job.request_id, &e),
        }
        self.send_bytes(job.agent, &out);
    }

    /// Whether the caller's policy allows `req` (for a request answered from a recording).
    pub(super) fn http_allowed(&self, id: AgentId, req: HttpRequest) -> Result<()> {
        let agent = self.agents.get(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        HttpJob::new(req, &agent.policy, 0)?;
        Ok(())
    }

    /// An agent's connection closed: its requests in flight have nobody to answer.
    pub(super) fn abandon_net_of(&mut self, id: AgentId) {
        // Its THINK calls still waiting will never be asked.
        let dropped = self.net.started.as_mut().map(|s| s.think.remove_agent(id)).unwrap_or_default();
        for key in dropped {
            self.net.in_flight.remove(key);
        }
        let keys: Vec<u64> = self.net.in_flight.iter().filter(|(_, j)| j.agent == id).map(|(k, _)| k).collect();
        for key in keys {
            if let Some(job) = self.net.in_flight.get_mut(key) {
                job.abandoned = true;
            }
        }
    }
}
