//! The agent channel: one connection to host port 1024, opened at boot with HELLO ("the guest agent
//! is ready"). In-guest agents' requests that the guest does not serve itself go over it. Several
//! agents share it, so each forwarded request gets a fresh id on the way out and its own id back on
//! the way in; the host never sees two requests with the same id.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use clove_core::protocol::{self, frame, ErrorCode, ErrorReply, FrameHeader, Hello, HelloReply, Opcode};

use crate::transport::{Transport, TransportError};
use crate::wire::{FrameReader, FrameWriter};

/// The host port of the agent channel.
pub const AGENT_PORT: u32 = 1024;
/// The request id of the guest's own HELLO; forwarded requests never use it.
const HELLO_ID: u32 = 0;
/// Connect attempts at boot, a tenth of a second apart: the host may still be wiring the port.
const CONNECT_ATTEMPTS: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Connect(#[from] TransportError),
    #[error("sending HELLO to the host: {0}")]
    Hello(io::Error),
}

/// Who is waiting for the reply to a forwarded request.
struct Waiter {
    client: FrameWriter,
    opcode: u8,
    request_id: u32,
}

#[derive(Default)]
struct Pending {
    next_id: u32,
    by_id: HashMap<u32, Waiter>,
    /// The host closed the channel: forwarding fails at once.
    closed: bool,
    /// What the host said it serves, in its reply to the guest's HELLO.
    host_features: Vec<String>,
}

pub struct HostChannel {
    writer: FrameWriter,
    pending: Mutex<Pending>,
}

impl HostChannel {
    /// Connects (retrying while the host sets up), says HELLO and starts routing replies.
    pub fn connect(transport: &Transport) -> Result<Arc<HostChannel>, HostError> {
        let mut attempt = 1;
        let stream = loop {
            match transport.connect(AGENT_PORT) {
                Ok(stream) => break stream,
                Err(_) if attempt < CONNECT_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e.into()),
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let reader = FrameReader::new(stream.try_clone().map_err(HostError::Hello)?);
        let channel = Arc::new(HostChannel { writer: FrameWriter::new(stream), pending: Mutex::default() });
        let hello = Hello { client: format!("clove-guest {}", env!("CARGO_PKG_VERSION")), token: None };
        let mut out = Vec::new();
        frame::write_frame(&mut out, Opcode::HELLO as u8, 0, HELLO_ID, &protocol::encode(&hello));
        channel.writer.send(&out).map_err(HostError::Hello)?;
        let router = channel.clone();
        std::thread::Builder::new()
            .name("host-replies".into())
            .spawn(move || router.route(reader))
            .map_err(HostError::Hello)?;
        Ok(channel)
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Every change to Pending is a single insert, remove or assignment: consistent after a panic.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the host serves, once its HELLO reply has come.
    pub fn host_features(&self) -> Vec<String> {
        self.lock().host_features.clone()
    }

    /// Sends a client's request to the host; the reply goes back to `client` under its own id.
    pub fn forward(&self, client: &FrameWriter, header: FrameHeader, payload: &[u8]) {
        let id = {
            let mut pending = self.lock();
            if pending.closed {
                drop(pending);
                let _ = client.error(header.opcode, header.request_id, ErrorCode::Io, closed_message());
                return;
            }
            let mut id = pending.next_id;
            // Skips the HELLO id and ids still waiting (after a wrap); there are far fewer than 2^32.
            while id == HELLO_ID || pending.by_id.contains_key(&id) {
                id = id.wrapping_add(1);
            }
            pending.next_id = id.wrapping_add(1);
            pending
                .by_id
                .insert(id, Waiter { client: client.clone(), opcode: header.opcode, request_id: header.request_id });
            id
        };
        let mut out = Vec::with_capacity(frame::HEADER_LEN + payload.len());
        frame::write_frame(&mut out, header.opcode, header.flags, id, payload);
        if self.writer.send(&out).is_err() {
            self.lock().by_id.remove(&id);
            let _ = client.error(header.opcode, header.request_id, ErrorCode::Io, closed_message());
        }
    }

    fn route(&self, mut reader: FrameReader) {
        let end = loop {
            let (header, payload) = match reader.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break "closed by the host".to_string(),
                Err(e) => break e.to_string(),
            };
            if !header.is_reply() {
                crate::log(&format!("ignoring a request (opcode 0x{:02x}) from the host", header.opcode));
                continue;
            }
            if header.request_id == HELLO_ID {
                self.hello_answered(header, &payload);
                continue;
            }
            let Some(waiter) = self.lock().by_id.remove(&header.request_id) else {
                continue;
            };
            let mut out = Vec::with_capacity(frame::HEADER_LEN + payload.len());
            frame::write_frame(&mut out, header.opcode, header.flags, waiter.request_id, &payload);
            // A client that went away loses its reply; nobody else is affected.
            let _ = waiter.client.send(&out);
        };
        crate::log(&format!("agent channel to the host: {end}"));
        let waiting = {
            let mut pending = self.lock();
            pending.closed = true;
            std::mem::take(&mut pending.by_id)
        };
        for waiter in waiting.into_values() {
            let _ = waiter.client.error(waiter.opcode, waiter.request_id, ErrorCode::Io, closed_message());
        }
    }

    fn hello_answered(&self, header: FrameHeader, payload: &[u8]) {
        if header.is_error() {
            let why = protocol::decode::<ErrorReply>(payload).map_or_else(|e| e.to_string(), |e| e.message);
            crate::log(&format!("the host refused the guest's HELLO: {why}"));
        } else if let Ok(reply) = protocol::decode::<HelloReply>(payload) {
            self.lock().host_features = reply.features;
        }
    }
}

fn closed_message() -> String {
    "the agent channel to the host is closed".into()
}
