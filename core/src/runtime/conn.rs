//! One agent's connection: bytes in through the frame decoder, replies out through a buffer that is
//! flushed as far as the socket takes it.

use std::io::{self, Read, Write};

use mio::net::UnixStream;

use crate::protocol::{Decoded, FrameDecoder, FrameError, FrameHeader};

/// Above this many unsent reply bytes the connection stops reading requests until the peer has
/// read some replies, so a client that pipelines without reading cannot grow the buffer forever.
const OUT_HIGH_WATER: usize = 4 << 20;

/// How much is read from the socket per read call.
const READ_CHUNK: usize = 64 << 10;

pub(super) struct Conn {
    pub stream: UnixStream,
    decoder: FrameDecoder,
    out: Vec<u8>,
    /// Whether requests other than HELLO are served: peers whose uid is not allowed must present
    /// the token first.
    pub admitted: bool,
    /// Set after EXIT or a framing error: flush what is queued, then close.
    pub closing: bool,
}

/// What reading found.
pub(super) enum Incoming {
    Frame(FrameHeader, Vec<u8>),
    Broken(FrameError),
    /// Nothing more for now; `eof` when the peer has closed its end.
    Idle {
        eof: bool,
    },
}

impl Conn {
    pub fn new(stream: UnixStream, max_payload: u32, admitted: bool) -> Self {
        Conn { stream, decoder: FrameDecoder::new(max_payload), out: Vec::new(), admitted, closing: false }
    }

    /// The next whole request, reading from the socket (until it would block) when none is buffered.
    pub fn next_incoming(&mut self) -> Incoming {
        loop {
            // After EXIT or a framing error nothing more is served.
            if self.closing {
                return Incoming::Idle { eof: false };
            }
            match self.decoder.decode() {
                Ok(Decoded::Frame(header, payload)) => return Incoming::Frame(header, payload),
                Err(e) => return Incoming::Broken(e),
                Ok(Decoded::NeedMore(_)) => {}
            }
            if self.out.len() >= OUT_HIGH_WATER {
                return Incoming::Idle { eof: false };
            }
            let mut chunk = [0u8; READ_CHUNK];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Incoming::Idle { eof: true },
                Ok(n) => self.decoder.extend(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Incoming::Idle { eof: false },
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Incoming::Idle { eof: true },
            }
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
