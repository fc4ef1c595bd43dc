//! A stand-in for the VMM and the host runtime: Unix sockets in a scratch directory where vsock ports
//! would be, and the guest binary started as an ordinary process (not PID 1).
#![allow(dead_code)] // each test binary uses a different part

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use clove_core::protocol::{self, frame, FrameHeader, Opcode};

/// Every wait in these tests ends here: a hang fails the test instead of stalling the run.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Host {
    pub dir: PathBuf,
    listeners: Vec<(u32, UnixListener)>,
    pub guest: Option<Child>,
}

impl Host {
    /// Listens on the given host ports in a fresh directory.
    pub fn new(tag: &str, ports: &[u32]) -> Host {
        Host::new_in(&std::env::temp_dir(), tag, ports)
    }

    /// The same, in a directory under `base`.
    pub fn new_in(base: &Path, tag: &str, ports: &[u32]) -> Host {
        let dir = base.join(format!("clove-guest-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let listeners = ports
            .iter()
            .map(|&p| {
                let l = UnixListener::bind(dir.join(p.to_string())).unwrap();
                l.set_nonblocking(true).unwrap();
                (p, l)
            })
            .collect();
        Host { dir, listeners, guest: None }
    }

    /// Starts the guest; `spawn` is the spawn spec's JSON, if any.
    pub fn start(&mut self, spawn: Option<&str>) {
        self.start_under(&[], spawn)
    }

    /// Starts the guest as the last argument of `launcher` (e.g. `unshare ... --`).
    pub fn start_under(&mut self, launcher: &[&str], spawn: Option<&str>) {
        let spec = self.dir.join("spawn.json");
        if let Some(json) = spawn {
            std::fs::write(&spec, json).unwrap();
        }
        let guest = env!("CARGO_BIN_EXE_clove-guest");
        let (program, args) = launcher.split_first().map_or((guest, &[][..]), |(p, a)| (*p, a));
        let child = Command::new(program)
            .args(args)
            .args((!launcher.is_empty()).then_some(guest))
            .env("CLOVE_GUEST_TRANSPORT", format!("unix:{}", self.dir.display()))
            .env("CLOVE_GUEST_SPAWN", &spec)
            .spawn()
            .unwrap();
        self.guest = Some(child);
    }

    /// The next connection the guest makes to host port `port`.
    pub fn accept(&self, port: u32) -> UnixStream {
        let listener = &self.listeners.iter().find(|(p, _)| *p == port).expect("not listening on that port").1;
        let end = Instant::now() + DEADLINE;
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream.set_read_timeout(Some(DEADLINE)).unwrap();
                    return stream;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("the guest never connected to host port {port}: {e}"),
            }
        }
    }

    /// Accepts the agent channel and checks that it opens with HELLO.
    pub fn accept_hello(&self) -> UnixStream {
        let mut channel = self.accept(1024);
        let (header, payload) = read_frame(&mut channel);
        assert_eq!(header.opcode, Opcode::HELLO as u8, "the guest's first frame is HELLO");
        let hello: protocol::Hello = protocol::decode(&payload).unwrap();
        assert!(hello.client.starts_with("clove-guest"), "{hello:?}");
        channel
    }

    /// Connects to the guest's control port, once it listens.
    pub fn control(&self) -> UnixStream {
        let path = self.dir.join("guest-1024");
        let end = Instant::now() + DEADLINE;
        loop {
            match UnixStream::connect(&path) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(DEADLINE)).unwrap();
                    return stream;
                }
                Err(e) if Instant::now() < end => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("the guest never listened on its control port: {e}"),
            }
        }
    }

    /// Waits for the guest process to end.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.guest.as_mut().expect("guest started");
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "the guest did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(child) = self.guest.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The bytes of a request frame.
pub fn request_bytes<T: serde::Serialize>(op: Opcode, id: u32, body: &T) -> Vec<u8> {
    let mut out = Vec::new();
    frame::write_frame(&mut out, op as u8, 0, id, &protocol::encode(body));
    out
}

pub fn send<T: serde::Serialize>(stream: &mut UnixStream, op: Opcode, id: u32, body: &T) {
    stream.write_all(&request_bytes(op, id, body)).unwrap();
}

pub fn read_frame(stream: &mut UnixStream) -> (FrameHeader, Vec<u8>) {
    let mut header = [0u8; frame::HEADER_LEN];
    stream.read_exact(&mut header).expect("a frame header");
    let header = frame::parse_header(&header, protocol::DEFAULT_MAX_PAYLOAD).unwrap();
    let mut payload = vec![0xA5; header.payload_len as usize];
    stream.read_exact(&mut payload).expect("a frame payload");
    (header, payload)
}

/// Reads a reply to request `id` and decodes it, failing on an error reply.
pub fn reply<T: serde::de::DeserializeOwned>(stream: &mut UnixStream, id: u32) -> T {
    let (header, payload) = read_frame(stream);
    assert_eq!(header.request_id, id);
    assert!(header.is_reply());
    assert!(!header.is_error(), "error reply: {:?}", protocol::decode::<protocol::ErrorReply>(&payload));
    protocol::decode(&payload).unwrap()
}

/// Reads an error reply to request `id`.
pub fn error_reply(stream: &mut UnixStream, id: u32) -> protocol::ErrorReply {
    let (header, payload) = read_frame(stream);
    assert_eq!(header.request_id, id);
    assert!(header.is_reply() && header.is_error(), "{header:?}");
    protocol::decode(&payload).unwrap()
}

pub fn read_all(mut stream: UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    out
}

/// The main program's status as the guest reports it on port 1027, acknowledged as the host does.
pub fn read_status(mut stream: UnixStream) -> i32 {
    let mut status = [0u8; 4];
    stream.read_exact(&mut status).unwrap();
    stream.write_all(&[1]).unwrap();
    i32::from_le_bytes(status)
}

/// A file the guest's programs write, once it holds `len` bytes.
pub fn wait_file(path: &Path, len: usize) -> Vec<u8> {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Ok(bytes) = std::fs::read(path) {
            if bytes.len() >= len {
                return bytes;
            }
        }
        assert!(Instant::now() < end, "{} never held {len} bytes", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}
