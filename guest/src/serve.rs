//! Serving one connection: the host's on the control port, or an in-guest agent's at its `CLOVE_FD`.
//! EXEC, READ, WRITE, SPAWN, HELLO, NOOP and the polling of async EXECs are served here; on an agent's connection everything
//! else goes to the host over the agent channel, where the agent's policy is applied.
//!
//! Bad input costs only its sender: an unknown opcode or a payload that does not decode gets an
//! error reply on its request id; bytes that are not frames get one error frame and the connection
//! (only that one) is closed.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clove_core::policy::Level;
use clove_core::protocol::{self, frame, ErrorCode, ErrorReply, FrameHeader, Opcode, PayloadError};

use crate::agents::{self, AgentError, AgentSpec};
use crate::async_results::{AsyncResults, QueueFull};
use crate::exec::{self, ExecError};
use crate::files::{self, FileError};
use crate::host::HostChannel;
use crate::reaper::Reaper;
use crate::wire::{FrameReader, FrameWriter, WireError, MAX_PAYLOAD};

/// Reply overhead kept free under the frame cap when sizing a READ, as in the process tier.
const REPLY_OVERHEAD: u64 = 64;
/// What the guest serves itself; the host's own list is added to it in a HELLO reply.
const LOCAL_FEATURES: &[&str] = &["exec", "read", "write", "spawn", "async"];

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("unknown opcode 0x{0:02x}")]
    UnknownOpcode(u8),
    #[error("malformed {op} request: {source}")]
    BadPayload { op: &'static str, source: PayloadError },
    #[error("{0} is not served on the control port")]
    NotOnControl(&'static str),
    #[error(transparent)]
    AsyncFull(#[from] QueueFull),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Agent(#[from] AgentError),
}

impl ServeError {
    fn code(&self) -> ErrorCode {
        match self {
            ServeError::UnknownOpcode(_) => ErrorCode::UnknownOpcode,
            ServeError::BadPayload { .. } => ErrorCode::BadPayload,
            ServeError::NotOnControl(_) => ErrorCode::Unsupported,
            ServeError::AsyncFull(_) => ErrorCode::LimitExceeded,
            ServeError::Exec(e) => e.code(),
            ServeError::File(e) => e.code(),
            ServeError::Agent(e) => e.code(),
        }
    }
}

/// What every connection shares.
pub struct Guest {
    pub reaper: Reaper,
    pub host: Arc<HostChannel>,
    /// Guest-local agent ids: 1 is the main program, children count up from 2.
    next_agent: AtomicU64,
}

impl Guest {
    pub fn new(reaper: Reaper, host: Arc<HostChannel>) -> Self {
        Guest { reaper, host, next_agent: AtomicU64::new(2) }
    }
}

/// Whose connection it is.
pub enum Role {
    /// The host's, on the control port.
    Control,
    /// An in-guest agent's.
    Agent(AgentSpec),
}

impl Role {
    fn cwd(&self) -> &Path {
        match self {
            Role::Control => Path::new("/"),
            Role::Agent(spec) => &spec.cwd,
        }
    }
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Closed,
    /// The host sent EXIT on the control port: the guest should power off.
    Exit,
}

/// One connection's answering side.
struct Conn {
    writer: FrameWriter,
    async_results: Arc<AsyncResults>,
}

enum Flow {
    Continue,
    Close,
    Exit,
}

/// Serves a connection until it closes.
pub fn serve(guest: &Arc<Guest>, stream: UnixStream, role: Role) -> Ended {
    let writer = match stream.try_clone() {
        Ok(half) => FrameWriter::new(half),
        Err(e) => {
            crate::log(&format!("duplicating a connection: {e}"));
            return Ended::Closed;
        }
    };
    let mut reader = FrameReader::new(stream);
    let conn = Conn { writer, async_results: Arc::default() };
    let ended = loop {
        match reader.next_frame() {
            Ok(Some((header, payload))) => match handle(guest, &role, &conn, header, &payload) {
                Flow::Continue => {}
                Flow::Close => break Ended::Closed,
                Flow::Exit => break Ended::Exit,
            },
            Ok(None) | Err(WireError::Io(_)) => break Ended::Closed,
            Err(WireError::Frame(e)) => {
                let _ = conn.writer.error(0, 0, ErrorCode::BadFrame, e.to_string());
                break Ended::Closed;
            }
        }
    };
    // EXEC workers may still hold the writer; the peer sees the end now all the same.
    conn.writer.shutdown();
    ended
}

fn request<'a, T: serde::Deserialize<'a>>(payload: &'a [u8], op: Opcode) -> Result<T, ServeError> {
    protocol::decode(payload).map_err(|source| ServeError::BadPayload { op: op.name(), source })
}

fn handle(guest: &Arc<Guest>, role: &Role, conn: &Conn, header: FrameHeader, payload: &[u8]) -> Flow {
    let id = header.request_id;
    let result = match Opcode::from_u8(header.opcode) {
        None => Err(ServeError::UnknownOpcode(header.opcode)),
        Some(op) => dispatch(guest, role, conn, op, header, payload),
    };
    match result {
        Ok(flow) => flow,
        Err(e) => {
            let _ = conn.writer.error(header.opcode, id, e.code(), e.to_string());
            Flow::Continue
        }
    }
}

fn dispatch(
    guest: &Arc<Guest>,
    role: &Role,
    conn: &Conn,
    op: Opcode,
    header: FrameHeader,
    payload: &[u8],
) -> Result<Flow, ServeError> {
    let id = header.request_id;
    let code = op as u8;
    let writer = &conn.writer;
    // A failed write means the peer is gone; the read side will see that and end the loop.
    match op {
        Opcode::HELLO => {
            request::<protocol::Hello>(payload, op)?;
            let _ = writer.reply(code, id, &hello_reply(guest, role));
        }
        Opcode::NOOP => {
            request::<protocol::Echo>(payload, op)?;
            let mut out = Vec::new();
            frame::write_frame(&mut out, code, frame::flags::REPLY, id, payload);
            let _ = writer.send(&out);
        }
        Opcode::EXEC => {
            let req: protocol::ExecRequest = request(payload, op)?;
            let (guest, writer, cwd) = (guest.clone(), writer.clone(), role.cwd().to_path_buf());
            let queue = req.run_async.then(|| conn.async_results.clone());
            if let Some(queue) = &queue {
                queue.reserve()?;
                let _ = writer.reply(code, id, &protocol::Accepted { request_id: id });
            }
            // A thread per EXEC, so a long one does not hold up the connection's other requests.
            std::thread::spawn(move || {
                let result = exec::run(&req, &cwd, &guest.reaper);
                let _ = match (queue, result) {
                    (Some(queue), result) => {
                        let (error, payload) = match result {
                            Ok(reply) => (None, protocol::encode(&reply)),
                            Err(e) => (Some(ErrorReply { code: e.code() as u16, message: e.to_string() }), Vec::new()),
                        };
                        queue.complete(protocol::AsyncResult { request_id: id, opcode: code, error, payload });
                        Ok(())
                    }
                    (None, Ok(reply)) => writer.reply(code, id, &reply),
                    (None, Err(e)) => writer.error(code, id, e.code(), e.to_string()),
                };
            });
        }
        // Results of async EXECs served here come first; the host's own (THINK, HTTP) when none wait.
        Opcode::ASYNC_POLL if matches!(role, Role::Control) || !conn.async_results.is_empty() => {
            let req: protocol::AsyncPollRequest = request(payload, op)?;
            let results = conn.async_results.take(req.max, MAX_PAYLOAD as usize - REPLY_OVERHEAD as usize);
            let _ = writer.reply(code, id, &protocol::AsyncPollReply { results });
        }
        Opcode::READ => {
            let cap = u64::from(MAX_PAYLOAD).saturating_sub(REPLY_OVERHEAD);
            let _ = writer.reply(code, id, &files::read(&request(payload, op)?, role.cwd(), cap)?);
        }
        Opcode::WRITE => {
            let _ = writer.reply(code, id, &files::write(&request(payload, op)?, role.cwd())?);
        }
        Opcode::SPAWN => {
            let _ = writer.reply(code, id, &spawn_child(guest, role, request(payload, op)?)?);
        }
        Opcode::EXIT => {
            let mut out = Vec::new();
            frame::write_frame(&mut out, code, frame::flags::REPLY, id, &[]);
            let _ = writer.send(&out);
            return Ok(match role {
                Role::Control => Flow::Exit,
                Role::Agent(_) => Flow::Close,
            });
        }
        _ => match role {
            Role::Control => return Err(ServeError::NotOnControl(op.name())),
            Role::Agent(_) => guest.host.forward(writer, header, payload),
        },
    }
    Ok(Flow::Continue)
}

fn hello_reply(guest: &Guest, role: &Role) -> protocol::HelloReply {
    let (agent_id, name) = match role {
        Role::Control => (0, "control".to_string()),
        Role::Agent(spec) => (spec.id, spec.name.clone()),
    };
    let mut features: Vec<String> = LOCAL_FEATURES.iter().map(|f| f.to_string()).collect();
    for feature in guest.host.host_features() {
        if !features.contains(&feature) {
            features.push(feature);
        }
    }
    protocol::HelloReply {
        protocol_version: frame::PROTOCOL_VERSION,
        runtime_version: format!("clove-guest {}", env!("CARGO_PKG_VERSION")),
        agent_id,
        name,
        // The VM is the boundary: inside it an agent may do anything; the host still applies the
        // agent's policy to what is forwarded.
        level: Level::Unrestricted,
        features,
    }
}

/// SPAWN in the guest: the child gets its own channel, served like its parent's; its output goes to
/// the guest's console.
fn spawn_child(
    guest: &Arc<Guest>,
    role: &Role,
    req: protocol::SpawnRequest,
) -> Result<protocol::SpawnReply, ServeError> {
    let root;
    let parent = match role {
        Role::Agent(spec) => spec,
        Role::Control => {
            root =
                AgentSpec { id: 0, name: "control".into(), argv: Vec::new(), env: Vec::new(), cwd: PathBuf::from("/") };
            &root
        }
    };
    let child = AgentSpec::child(parent, guest.next_agent.fetch_add(1, Ordering::Relaxed), req)?;
    let launched = agents::launch(&child, Stdio::inherit(), Stdio::inherit(), &guest.reaper)?;
    let reply = protocol::SpawnReply {
        id: child.id,
        name: child.name.clone(),
        pid: launched.pid,
        state: protocol::AgentState::Running,
    };
    let (id, name) = (child.id, child.name.clone());
    let served = guest.clone();
    std::thread::spawn(move || serve(&served, launched.channel, Role::Agent(child)));
    std::thread::spawn(move || {
        if let Ok(exit) = launched.exited.recv() {
            crate::log(&format!("agent {name} ({id}) exited with status {}", exit.status()));
        }
    });
    Ok(reply)
}
