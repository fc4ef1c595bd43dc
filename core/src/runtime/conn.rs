//! One agent's connection: bytes in through the frame decoder, replies out through a buffer that is
//! flushed as far as the socket takes it.

use std::io::{self, Read, Write};

use mio::net::UnixStream;

use crate::protocol::FrameDecoder;

/// Above this many unsent reply bytes the connection stops reading requests until the peer has
/// read some replies, so a client that pipelines without reading cannot grow the buffer forever.
const OUT_HIGH_WATER: usize = 4 << 20;

/// How much the reactor reads from a socket per read call (one buffer shared by all connections).
pub(super) const READ_CHUNK: usize = 64 << 10;

pub(super) struct Conn {
    pub stream: UnixStream,
    /// Taken out by the reactor while it serves the frames it holds, so their payloads can be
    /// borrowed without copying.
    pub decoder: FrameDecoder,
    out: Vec<u8>,
    /// Whether requests other than HELLO are served: peers whose uid is not allowed must present
    /// the token first.
    pub admitted: bool,
    /// Set after EXIT or a framing error: flush what is queued, then close.
    pub closing: bool,
    /// Cleared by a short read: the socket is drained until the next readiness event, so reading
    /// again would only return "would block".
    pub may_read: bool,
}

/// What one read from the socket found.
pub(super) enum Fill {
    /// Bytes went into the decoder.
    Data,
    /// Nothing now: the socket is drained, or the peer must read its replies first.
    Idle,
    /// The peer closed its end, or the socket failed.
    Eof,
}

impl Conn {
    pub fn new(stream: UnixStream, max_payload: u32, admitted: bool) -> Self {
        Conn {
            stream,
            decoder: FrameDecoder::new(max_payload),
            out: Vec::new(),
            admitted,
            closing: false,
            may_read: true,
        }
    }

    /// Reads once from the socket into the decoder, through `chunk`.
    pub fn fill(&mut self, chunk: &mut [u8]) -> Fill {
        if self.closing || !self.may_read || self.out.len() >= OUT_HIGH_WATER {
            return Fill::Idle;
        }
        loop {
            return match self.stream.read(chunk) {
                Ok(0) => Fill::Eof,
                Ok(n) => {
                    // A stream socket returns less than asked only when it has nothing more.
                    self.may_read = n == chunk.len();
                    self.decoder.extend(&chunk[..n]);
                    Fill::Data
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.may_read = false;
                    Fill::Idle
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => Fill::Eof,
            };
        }
    }

    pub fn queue(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Writes queued bytes until the socket would block. `Ok(true)` when nothing is left queued.
    pub fn flush(&mut self) -> io::Result<bool> {
        let mut written = 0;
        let result = loop {
            if written == self.out.len() {
                break Ok(true);
            }
            match self.stream.write(&self.out[written..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.out.drain(..written);
        result
    }
}
