//! `clove-run kernel --state PATH`: every STORE the host acknowledged is still there after the host
//! is killed with SIGKILL and started again on the same file; a commit the disk refuses is an error
//! and is undone.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clove_core::protocol::frame::{self, HEADER_LEN};
use clove_core::protocol::{
    self, DeleteReply, ErrorCode, ErrorReply, FetchReply, KeyRequest, Opcode, Scope, StoreReply, StoreRequest,
};

/// A `clove-run kernel` process, SIGKILLed when dropped.
struct Kernel(Child);

impl Kernel {
    fn start(socket: &Path, state: &Path) -> Kernel {
        let mut kernel = Command::new(env!("CARGO_BIN_EXE_clove-run"));
        kernel.arg("kernel").arg("--socket").arg(socket).arg("--state").arg(state);
        Kernel::run(kernel, socket)
    }

    /// Runs `command` and waits until it listens on `socket`.
    fn run(mut command: Command, socket: &Path) -> Kernel {
        // A SIGKILLed kernel leaves its socket file behind; the next one replaces it.
        let kernel = Kernel(command.stderr(Stdio::null()).spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(socket).is_err() {
            assert!(Instant::now() < deadline, "the kernel did not listen on {}", socket.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        kernel
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends requests `0..n` at once, then reads their replies: (request id, payload) in arrival order.
fn pipeline(stream: &mut UnixStream, op: Opcode, payloads: &[Vec<u8>]) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    for (id, payload) in payloads.iter().enumerate() {
        frame::write_frame(&mut out, op as u8, 0, id as u32, payload);
    }
    stream.write_all(&out).unwrap();
    (0..payloads.len())
        .map(|_| {
            let mut header = [0u8; HEADER_LEN];
            stream.read_exact(&mut header).unwrap();
            let header = frame::parse_header(&header, u32::MAX).unwrap();
            let mut payload = vec![0xA5; header.payload_len as usize];
            stream.read_exact(&mut payload).unwrap();
            assert!(!header.is_error(), "{:?}", protocol::decode::<protocol::ErrorReply>(&payload));
            (header.request_id, payload)
        })
        .collect()
}

fn value(i: usize) -> String {
    format!(r#"{{"i":{i},"note":"acknowledged before the kill"}}"#)
}

#[test]
fn acknowledged_stores_survive_kill_9_of_the_host() {
    let dir = std::env::temp_dir().join(format!("clove-cli-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (socket, state): (PathBuf, PathBuf) = (dir.join("clove.sock"), dir.join("state.redb"));
    let keys = 200;

    let host = Kernel::start(&socket, &state);
    let mut agent = UnixStream::connect(&socket).unwrap();
    agent.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let stores: Vec<Vec<u8>> = (0..keys)
        .map(|i| {
            let req = StoreRequest { key: format!("k{i}"), value_json: value(i), scope: Scope::Global, ttl_ms: None };
            protocol::encode(&req)
        })
        .collect();
    // Every reply is an acknowledgement; then the host dies without a chance to flush anything.
    for (id, payload) in pipeline(&mut agent, Opcode::STORE, &stores) {
        assert_eq!(protocol::decode::<StoreReply>(&payload).unwrap().key, format!("k{id}"));
    }
    drop(host);

    let _host = Kernel::start(&socket, &state);
    let mut agent = UnixStream::connect(&socket).unwrap();
    agent.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let fetches: Vec<Vec<u8>> =
        (0..keys).map(|i| protocol::encode(&KeyRequest { key: format!("k{i}"), scope: None })).collect();
    for (id, payload) in pipeline(&mut agent, Opcode::FETCH, &fetches) {
        let found = protocol::decode::<FetchReply>(&payload).unwrap().value.expect("an acknowledged key is missing");
        assert_eq!((found.scope, found.value_json), (Scope::Global, value(id as usize)));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// One request and its reply, or the error it got.
fn call(stream: &mut UnixStream, op: Opcode, payload: &[u8]) -> Result<Vec<u8>, ErrorReply> {
    let mut out = Vec::new();
    frame::write_frame(&mut out, op as u8, 0, 1, payload);
    stream.write_all(&out).unwrap();
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header).unwrap();
    let header = frame::parse_header(&header, u32::MAX).unwrap();
    let mut reply = vec![0xA5; header.payload_len as usize];
    stream.read_exact(&mut reply).unwrap();
    if header.is_error() {
        Err(protocol::decode(&reply).unwrap())
    } else {
        Ok(reply)
    }
}

fn store(stream: &mut UnixStream, key: &str, value_json: String, scope: Scope) -> Result<StoreReply, ErrorReply> {
    let req = StoreRequest { key: key.into(), value_json, scope, ttl_ms: None };
    call(stream, Opcode::STORE, &protocol::encode(&req)).map(|r| protocol::decode(&r).unwrap())
}

fn fetch(stream: &mut UnixStream, key: &str) -> Option<String> {
    let reply = call(stream, Opcode::FETCH, &protocol::encode(&KeyRequest { key: key.into(), scope: None })).unwrap();
    protocol::decode::<FetchReply>(&reply).unwrap().value.map(|v| v.value_json)
}

#[test]
fn a_commit_the_disk_refuses_is_undone_and_leaves_global_keys_read_only() {
    let root = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")));
    let unshare = Path::new("/usr/bin/unshare").exists();
    if !root || !unshare {
        eprintln!("SKIPPED: a full disk needs root and unshare(1) to mount a small tmpfs");
        return;
    }
    let dir = std::env::temp_dir().join(format!("clove-cli-state-full-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (disk, socket) = (dir.join("disk"), dir.join("clove.sock"));
    std::fs::create_dir_all(&disk).unwrap();
    // The kernel's database on a 3 MiB tmpfs of its own mount namespace.
    let mut kernel = Command::new("/usr/bin/unshare");
    let script = r#"mount -t tmpfs -o size=3m tmpfs "$1" && exec "$2" kernel --socket "$3" --state "$1/state.redb""#;
    kernel.args(["-m", "sh", "-c", script, "sh"]).arg(&disk).arg(env!("CARGO_BIN_EXE_clove-run")).arg(&socket);
    let _host = Kernel::run(kernel, &socket);
    let mut agent = UnixStream::connect(&socket).unwrap();
    agent.set_read_timeout(Some(Duration::from_secs(20))).unwrap();

    let big = || format!("\"{}\"", "x".repeat(200 << 10));
    let (refused, error) = (0..100)
        .find_map(|i| store(&mut agent, &format!("k{i}"), big(), Scope::Global).err().map(|e| (i, e)))
        .expect("a 3 MiB disk cannot take 20 MiB");
    assert!(refused > 0, "the first writes fit");
    assert_eq!(error.code, ErrorCode::Io as u16, "{}", error.message);
    assert!(error.message.contains("failed to commit") && error.message.contains("read-only"), "{}", error.message);

    // The refused write is undone; what was committed stays readable.
    assert_eq!(fetch(&mut agent, &format!("k{refused}")), None);
    assert_eq!(fetch(&mut agent, "k0"), Some(big()));
    // Global keys are read-only now; agent keys live in memory and still work.
    assert_eq!(store(&mut agent, "small", "1".into(), Scope::Global).unwrap_err().code, ErrorCode::Io as u16);
    let delete = protocol::encode(&KeyRequest { key: "k0".into(), scope: None });
    assert_eq!(call(&mut agent, Opcode::DELETE, &delete).unwrap_err().code, ErrorCode::Io as u16);
    store(&mut agent, "mine", "1".into(), Scope::Agent).unwrap();
    let deleted = call(&mut agent, Opcode::DELETE, &protocol::encode(&KeyRequest { key: "mine".into(), scope: None }));
    assert_eq!(protocol::decode::<DeleteReply>(&deleted.unwrap()).unwrap().deleted, Some(Scope::Agent));
    let _ = std::fs::remove_dir_all(&dir);
}
