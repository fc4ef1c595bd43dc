//! Frames on a blocking stream: a reader that yields whole frames, and a writer that several threads
//! share (a connection's own thread, its EXEC workers, the host channel's reply router) and that
//! writes each frame whole, so frames never interleave.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError};

use clove_core::protocol::{self, Decoded, ErrorCode, ErrorReply, FrameDecoder, FrameError, FrameHeader};

/// The frame size cap, in both directions: the codec's, checked before any payload is buffered.
pub const MAX_PAYLOAD: u32 = protocol::DEFAULT_MAX_PAYLOAD;
const READ_CHUNK: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("reading a frame: {0}")]
    Io(#[from] io::Error),
}

/// Yields the frames a stream carries.
pub struct FrameReader {
    stream: UnixStream,
    decoder: FrameDecoder,
    chunk: Vec<u8>,
}

impl FrameReader {
    pub fn new(stream: UnixStream) -> Self {
        FrameReader { stream, decoder: FrameDecoder::new(MAX_PAYLOAD), chunk: vec![0; READ_CHUNK] }
    }

    /// The next frame, or `None` at end of stream. After an error the stream cannot be resynchronised.
    pub fn next_frame(&mut self) -> Result<Option<(FrameHeader, Vec<u8>)>, WireError> {
        loop {
            if let Decoded::Frame(header, payload) = self.decoder.decode()? {
                return Ok(Some((header, payload.to_vec())));
            }
            let n = match self.stream.read(&mut self.chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            self.decoder.extend(&self.chunk[..n]);
        }
    }
}

/// The write side of a connection, shared by whoever answers on it.
#[derive(Clone)]
pub struct FrameWriter(Arc<Mutex<UnixStream>>);

impl FrameWriter {
    pub fn new(stream: UnixStream) -> Self {
        FrameWriter(Arc::new(Mutex::new(stream)))
    }

    /// Writes bytes holding whole frames.
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        // A thread that panicked mid-write leaves at worst a torn frame, which the peer's decoder
        // reports; the stream itself is still usable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner).write_all(bytes)
    }

    pub fn reply<T: serde::Serialize>(&self, opcode: u8, request_id: u32, reply: &T) -> io::Result<()> {
        let mut out = Vec::new();
        protocol::write_reply(&mut out, opcode, request_id, reply);
        self.send(&out)
    }

    pub fn error(&self, opcode: u8, request_id: u32, code: ErrorCode, message: String) -> io::Result<()> {
        let mut out = Vec::new();
        protocol::write_error(&mut out, opcode, request_id, &ErrorReply { code: code as u16, message });
        self.send(&out)
    }

    /// Ends the connection for the peer, whatever other threads still hold this writer.
    pub fn shutdown(&self) {
        let _ = self.0.lock().unwrap_or_else(PoisonError::into_inner).shutdown(std::net::Shutdown::Both);
    }
}
