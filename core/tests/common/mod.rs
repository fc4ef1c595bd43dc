//! A minimal protocol client and helpers shared by the runtime's integration tests.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clove_core::protocol::frame::{write_frame, HEADER_LEN};
use clove_core::protocol::{self, ErrorReply, FrameHeader, Opcode};
use clove_core::runtime::{ListenConfig, Runtime, RuntimeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A runtime listening on a fresh socket path, torn down when dropped.
pub struct Fixture {
    pub runtime: Runtime,
    pub socket: PathBuf,
    pub dir: PathBuf,
}

impl Fixture {
    pub fn new(tag: &str, max_level: clove_core::policy::Level) -> Fixture {
        Self::with_config(tag, max_level, RuntimeConfig::default())
    }

    pub fn with_config(tag: &str, max_level: clove_core::policy::Level, config: RuntimeConfig) -> Fixture {
        let dir = std::env::temp_dir().join(format!("clove-it-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("clove.sock");
        let runtime = Runtime::start(config).unwrap();
        let mut listen = ListenConfig::new(&socket);
        listen.max_level = max_level;
        runtime.listen(listen).unwrap();
        Fixture { runtime, socket, dir }
    }

    pub fn connect(&self) -> Client {
        Client::connect(&self.socket)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Client {
    pub stream: UnixStream,
    next_id: u32,
}

impl Client {
    pub fn connect(path: &std::path::Path) -> Client {
        let stream = UnixStream::connect(path).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { stream, next_id: 1 }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends one request frame; returns its request id.
    pub fn send<T: Serialize>(&mut self, op: Opcode, req: &T) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        let mut out = Vec::new();
        write_frame(&mut out, op as u8, 0, id, &protocol::encode(req));
        self.send_raw(&out);
        id
    }

    /// Reads one frame, or `None` when the runtime closed the connection.
    pub fn read_frame(&mut self) -> Option<(FrameHeader, Vec<u8>)> {
        let mut header = [0u8; HEADER_LEN];
        if self.stream.read_exact(&mut header).is_err() {
            return None;
        }
        let header = protocol::frame::parse_header(&header, u32::MAX).unwrap();
        let mut payload = vec![0xA5; header.payload_len as usize];
        self.stream.read_exact(&mut payload).unwrap();
        Some((header, payload))
    }

    /// Sends a request and decodes its reply (or the error it got).
    pub fn call<T: Serialize, R: DeserializeOwned>(&mut self, op: Opcode, req: &T) -> Result<R, ErrorReply> {
        let id = self.send(op, req);
        let (header, payload) = self.read_frame().expect("connection closed");
        assert_eq!(header.request_id, id);
        assert!(header.is_reply());
        if header.is_error() {
            Err(protocol::decode(&payload).unwrap())
        } else {
            Ok(protocol::decode(&payload).unwrap())
        }
    }

    pub fn noop(&mut self, data: &[u8]) -> Vec<u8> {
        let reply: protocol::Echo = self.call(Opcode::NOOP, &protocol::Echo { data: data.to_vec() }).unwrap();
        reply.data
    }

    /// One ASYNC_POLL: the results waiting now.
    pub fn poll_async(&mut self) -> Vec<protocol::AsyncResult> {
        let reply: protocol::AsyncPollReply =
            self.call(Opcode::ASYNC_POLL, &protocol::AsyncPollRequest { max: 10 }).unwrap();
        reply.results
    }

    /// ASYNC_POLL until a first result comes (failing the test after `limit`): what came with it.
    pub fn await_async(&mut self, limit: Duration) -> Vec<protocol::AsyncResult> {
        let mut results = Vec::new();
        assert!(eventually(limit, || {
            results.extend(self.poll_async());
            !results.is_empty()
        }));
        results
    }

    /// The newest audit entry of `event` in `category`, and its details parsed.
    pub fn audit_entry(&mut self, category: &str, event: &str) -> (clove_core::audit::AuditEntry, serde_json::Value) {
        let query = protocol::AuditQuery { category: Some(category.into()), limit: 10, ..Default::default() };
        let log: protocol::AuditLogReply = self.call(Opcode::GET_AUDIT_LOG, &query).unwrap();
        let entry = log.entries.into_iter().rev().find(|e| e.event == event).expect("the audit entry");
        let details = serde_json::from_str(&entry.details_json).unwrap();
        (entry, details)
    }

    /// Whether the runtime closed the connection (reads EOF within a few seconds).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0))
    }
}

/// Polls `cond` until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Pids of processes whose command line is exactly `argv`.
pub fn pids_running(argv: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}

/// This process's runtime directories still in the temp directory (sandboxes' work directories
/// live in them), by name.
pub fn work_leftovers() -> Vec<String> {
    let prefix = format!("clove-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// Whether this test runs as root, which namespaces and cgroups need.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
}

/// `is_root`, saying SKIPPED loudly when not.
pub fn root_or_skip(test: &str) -> bool {
    let root = is_root();
    if !root {
        eprintln!("SKIPPED: {test}: needs root for namespaces and cgroups");
    }
    root
}
