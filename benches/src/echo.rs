//! The anchor: a raw echo server over `std::os::unix::net`, blocking, one thread per connection.
//!
//! Each thread reads what the socket has, takes the whole frames out of it (header, then payload)
//! and writes those same bytes back with one write, keeping a partial frame for the next read. It
//! does the I/O a frame server cannot avoid, in the pattern Clove's reactor uses (one read and one
//! write per burst of requests), and nothing else.

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use clove_core::protocol::frame::{parse_header, HEADER_LEN};
use clove_core::protocol::DEFAULT_MAX_PAYLOAD;

const READ_CHUNK: usize = 64 << 10;

/// A running echo server; dropping it stops accepting and removes the socket file.
pub struct RawEcho {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl RawEcho {
    pub fn start(path: &Path) -> io::Result<RawEcho> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let acceptor = thread::Builder::new().name("raw-echo".into()).spawn(move || accept_loop(&listener, &flag))?;
        Ok(RawEcho { path: path.to_path_buf(), stop, acceptor: Some(acceptor) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RawEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // A connection wakes the blocking accept so the thread sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: &UnixListener, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let Ok(stream) = stream else { continue };
        // A connection thread ends when its client closes; a failed spawn loses only that client.
        let _ = thread::Builder::new().name("raw-echo-conn".into()).spawn(move || echo_frames(stream));
    }
}

fn echo_frames(mut stream: UnixStream) -> io::Result<()> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut end = 0;
    loop {
        if end == buf.len() {
            // One frame larger than the buffer; the payload cap bounds the growth.
            buf.resize(buf.len() * 2, 0);
        }
        let n = stream.read(&mut buf[end..])?;
        if n == 0 {
            return Ok(());
        }
        end += n;
        let whole = whole_frames(&buf[..end])?;
        if whole > 0 {
            stream.write_all(&buf[..whole])?;
            buf.copy_within(whole..end, 0);
            end -= whole;
        }
    }
}

/// How many leading bytes of `bytes` are whole frames.
fn whole_frames(bytes: &[u8]) -> io::Result<usize> {
    let mut at = 0;
    while let Some(head) = bytes[at..].first_chunk::<HEADER_LEN>() {
        let header =
            parse_header(head, DEFAULT_MAX_PAYLOAD).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let total = HEADER_LEN + header.payload_len as usize;
        if bytes.len() - at < total {
            break;
        }
        at += total;
    }
    Ok(at)
}
