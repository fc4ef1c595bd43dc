//! The wire protocol: a fixed header ([`frame`]), opcode numbers ([`opcode`]) and postcard payloads
//! ([`messages`], [`ipc`] for the services between agents, [`record`] for record and replay, [`state`]
//! for the state store).

pub mod frame;
pub mod ipc;
pub mod messages;
pub mod opcode;
pub mod record;
pub mod state;

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

pub use frame::{Decoded, FrameDecoder, FrameError, FrameHeader, DEFAULT_MAX_PAYLOAD};
pub use ipc::*;
pub use messages::*;
pub use opcode::Opcode;
pub use record::*;
pub use state::*;

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload does not decode: {0}")]
    Malformed(postcard::Error),
    #[error("payload has {0} trailing bytes")]
    Trailing(usize),
}

/// Encodes a payload.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // INVARIANT: postcard only fails to serialize into a growable buffer for types that serde cannot
    // express (maps of unknown length); no message type has one, which the vector tests exercise.
    postcard::to_allocvec(value).unwrap_or_default()
}

/// Decodes a payload, refusing trailing bytes. `T` may borrow from `bytes`.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, PayloadError> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(PayloadError::Malformed)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(PayloadError::Trailing(rest.len()))
    }
}

/// Appends a reply frame for request `request_id` to `out`.
pub fn write_reply<T: Serialize>(out: &mut Vec<u8>, opcode: u8, request_id: u32, reply: &T) {
    frame::write_frame(out, opcode, frame::flags::REPLY, request_id, &encode(reply));
}

/// Appends an error reply frame for request `request_id` to `out`.
pub fn write_error(out: &mut Vec<u8>, opcode: u8, request_id: u32, error: &ErrorReply) {
    let flags = frame::flags::REPLY | frame::flags::ERROR;
    frame::write_frame(out, opcode, flags, request_id, &encode(error));
}

#[cfg(test)]
mod tests;
