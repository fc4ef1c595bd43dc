//! The fixed frame header and the incremental frame decoder.
//!
//! Every frame is a 16-byte little-endian header followed by a postcard payload:
//!
//! | offset | size | field        |
//! |--------|------|--------------|
//! | 0      | 4    | magic `CLOV` (`43 4C 4F 56`) |
//! | 4      | 1    | protocol version (1) |
//! | 5      | 1    | opcode       |
//! | 6      | 2    | flags (`REPLY` = 1, `ERROR` = 2) |
//! | 8      | 4    | request id, chosen by the client and echoed in the reply |
//! | 12     | 4    | payload length |

use alloc::vec::Vec;

use super::Opcode;

/// The four magic bytes that open every frame.
pub const MAGIC: [u8; 4] = *b"CLOV";
/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 16;
/// Default cap on a payload: the seed's 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: u32 = 1 << 20;

/// Bits of [`FrameHeader::flags`].
pub mod flags {
    /// The frame answers a request with the same request id.
    pub const REPLY: u16 = 1;
    /// The payload is an [`ErrorReply`](crate::protocol::ErrorReply).
    pub const ERROR: u16 = 2;
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The raw opcode byte; it may name no known [`Opcode`].
    pub opcode: u8,
    pub flags: u16,
    pub request_id: u32,
    pub payload_len: u32,
}

impl FrameHeader {
    /// A request header for `opcode`.
    pub fn request(opcode: Opcode, request_id: u32, payload_len: u32) -> Self {
        FrameHeader { opcode: opcode as u8, flags: 0, request_id, payload_len }
    }

    /// The header bytes, version [`PROTOCOL_VERSION`].
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = PROTOCOL_VERSION;
        out[5] = self.opcode;
        out[6..8].copy_from_slice(&self.flags.to_le_bytes());
        out[8..12].copy_from_slice(&self.request_id.to_le_bytes());
        out[12..16].copy_from_slice(&self.payload_len.to_le_bytes());
        out
    }

    pub fn is_reply(&self) -> bool {
        self.flags & flags::REPLY != 0
    }

    pub fn is_error(&self) -> bool {
        self.flags & flags::ERROR != 0
    }
}

/// Why a byte stream is not a frame stream. The connection cannot be resynchronised after any of
/// these: the peer gets one error frame and the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad magic {0:02x?}, expected \"CLOV\"")]
    BadMagic([u8; 4]),
    #[error("protocol version {0} is not supported (this runtime speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u8),
    #[error("payload of {len} bytes exceeds the maximum of {max}")]
    Oversized { len: u32, max: u32 },
}

/// What the decoder found at the front of its buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole frame: its header, and its payload borrowed from the decoder's buffer.
    Frame(FrameHeader, &'a [u8]),
    /// The buffer holds a partial frame; at least this many more bytes are needed.
    NeedMore(usize),
}

/// Splits a byte stream into frames. Feed bytes with [`extend`](Self::extend) and take frames with
/// [`decode`](Self::decode) until it answers [`Decoded::NeedMore`].
///
/// The payload length is checked against the maximum as soon as the header is complete, before any
/// payload byte is buffered or any allocation sized by it is made.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Where the unread bytes start: frames are taken by moving this, not by shifting the buffer,
    /// so a burst of pipelined frames costs one compaction rather than one per frame.
    start: usize,
    max_payload: u32,
}

impl FrameDecoder {
    pub fn new(max_payload: u32) -> Self {
        FrameDecoder { buf: Vec::new(), start: 0, max_payload }
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Takes the next whole frame off the front of the buffer.
    pub fn decode(&mut self) -> Result<Decoded<'_>, FrameError> {
        let unread = &self.buf[self.start..];
        let Some(header) = unread.first_chunk::<HEADER_LEN>() else {
            return Ok(Decoded::NeedMore(HEADER_LEN - unread.len()));
        };
        let header = parse_header(header, self.max_payload)?;
        let total = HEADER_LEN + header.payload_len as usize;
        if unread.len() < total {
            return Ok(Decoded::NeedMore(total - unread.len()));
        }
        let payload_at = self.start + HEADER_LEN;
        self.start += total;
        Ok(Decoded::Frame(header, &self.buf[payload_at..self.start]))
    }
}

/// Validates a header: magic, version and the payload cap.
pub fn parse_header(bytes: &[u8; HEADER_LEN], max_payload: u32) -> Result<FrameHeader, FrameError> {
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    if bytes[4] != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion(bytes[4]));
    }
    let payload_len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if payload_len > max_payload {
        return Err(FrameError::Oversized { len: payload_len, max: max_payload });
    }
    Ok(FrameHeader {
        opcode: bytes[5],
        flags: u16::from_le_bytes([bytes[6], bytes[7]]),
        request_id: u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        payload_len,
    })
}

/// Appends one whole frame (header and payload) to `out`.
pub fn write_frame(out: &mut Vec<u8>, opcode: u8, flags: u16, request_id: u32, payload: &[u8]) {
    let header = FrameHeader { opcode, flags, request_id, payload_len: payload.len() as u32 };
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(payload);
}
