//! The client side shared by both servers: NOOP request frames and a buffered reader of replies.
//! The same client code talks to Clove and to the raw echo, so its own cost cancels in the ratios.

use std::io::{self, Read};

use clove_core::protocol::frame::{parse_header, write_frame, HEADER_LEN};
use clove_core::protocol::{self, Echo, FrameHeader, Opcode, DEFAULT_MAX_PAYLOAD};

/// Bytes of data carried by every NOOP request.
pub const NOOP_DATA_LEN: usize = 16;

/// How much the reader asks the socket for at once.
const READ_CHUNK: usize = 64 << 10;

/// The postcard payload of a NOOP request: `Echo` with 16 bytes of data.
pub fn noop_payload() -> Vec<u8> {
    protocol::encode(&Echo { data: vec![0x5A; NOOP_DATA_LEN] })
}

/// Appends one NOOP request frame with request id `id`.
pub fn push_noop(out: &mut Vec<u8>, payload: &[u8], id: u32) {
    write_frame(out, Opcode::NOOP as u8, 0, id, payload);
}

/// Rewrites the request id of a frame built by [`push_noop`].
pub fn set_request_id(frame: &mut [u8], id: u32) {
    frame[8..12].copy_from_slice(&id.to_le_bytes());
}

/// A reply must answer `expected` and must not be an error frame.
pub fn check_reply(header: &FrameHeader, expected: u32) -> io::Result<()> {
    if header.request_id != expected {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("reply to request {} where {expected} was expected", header.request_id),
        ));
    }
    if header.is_error() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("request {expected} was answered with an error frame"),
        ));
    }
    Ok(())
}

/// Splits a byte stream into frames, reading from the socket in large chunks.
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameReader {
    pub fn new() -> Self {
        FrameReader { buf: vec![0; READ_CHUNK], start: 0, end: 0 }
    }

    /// The header of the next whole frame; its payload is skipped.
    pub fn next_frame(&mut self, stream: &mut impl Read) -> io::Result<FrameHeader> {
        loop {
            if let Some(header) = self.take_buffered()? {
                return Ok(header);
            }
            self.fill(stream)?;
        }
    }

    fn take_buffered(&mut self) -> io::Result<Option<FrameHeader>> {
        let buffered = &self.buf[self.start..self.end];
        let Some(head) = buffered.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let header =
            parse_header(head, DEFAULT_MAX_PAYLOAD).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let total = HEADER_LEN + header.payload_len as usize;
        if buffered.len() < total {
            if total > self.buf.len() {
                // The cap checked above bounds this growth.
                self.buf.resize(total, 0);
            }
            return Ok(None);
        }
        self.start += total;
        Ok(Some(header))
    }

    fn fill(&mut self, stream: &mut impl Read) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = stream.read(&mut self.buf[self.end..])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"));
        }
        self.end += n;
        Ok(())
    }
}
