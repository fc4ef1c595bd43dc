//! `clove-run kernel --state PATH`: every STORE the host acknowledged is still there after the host
//! is killed with SIGKILL and started again on the same file.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clove_core::protocol::frame::{self, HEADER_LEN};
use clove_core::protocol::{self, FetchReply, KeyRequest, Opcode, Scope, StoreReply, StoreRequest};

/// A `clove-run kernel` process, SIGKILLed when dropped.
struct Kernel(Child);

impl Kernel {
    fn start(socket: &Path, state: &Path) -> Kernel {
        // A SIGKILLed kernel leaves its socket file behind; the next one replaces it.
        let child = Command::new(env!("CARGO_BIN_EXE_clove-run"))
            .arg("kernel")
            .arg("--socket")
            .arg(socket)
            .arg("--state")
            .arg(state)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let kernel = Kernel(child);
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
