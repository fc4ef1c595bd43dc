//! Filling the guest's rx queue: control packets owed first, then host stream data taken
//! round-robin, each within the connection's credit and the buffer's room.

use std::io::Read;

use virtio_queue::{QueueOwnedT, QueueT};

use super::{is_transient, ConnKey, Header, Muxer, HOST_CID, RX};
use crate::devices::vsock::packet::*;

impl Muxer {
    /// Fills rx buffers with owed control packets first, then host data, until either runs out.
    pub(super) fn fill_rx(&mut self) {
        while !self.rx_starved && !self.failed() {
            if self.control.is_empty() && self.readable.is_empty() {
                return;
            }
            let Some(live) = self.live.as_mut() else { return };
            let queue = &mut live.queues[RX];
            let next = queue.iter(&self.mem).map(|mut chains| chains.next());
            let chain = match next {
                Ok(Some(chain)) => chain,
                Ok(None) => {
                    self.rx_starved = true;
                    return;
                }
                Err(_) => return self.fail(),
            };
            let head = chain.head_index();
            let Ok(buffers) = rx_buffers(&self.mem, chain) else { return self.fail() };
            let Some((header, payload)) = self.next_rx_packet(buffers.payload_room) else {
                // Nothing to send after all (stale entries): hand the chain back.
                if let Some(live) = self.live.as_mut() {
                    live.queues[RX].go_to_previous_position();
                }
                return;
            };
            let Some(live) = self.live.as_mut() else { return };
            let written = buffers.write(&self.mem, header, &payload);
            match written.map(|n| live.queues[RX].add_used(&self.mem, head, n)) {
                Ok(Ok(())) => self.used = true,
                _ => return self.fail(),
            }
        }
    }

    fn next_rx_packet(&mut self, room: usize) -> Option<(Header, Vec<u8>)> {
        while let Some(c) = self.control.pop_front() {
            // Only RST outlives its connection; a RESPONSE or update for a dead one is stale.
            if c.op == OP_RST || self.conns.contains_key(&c.key) {
                return Some((self.header(c.key, c.op, c.flags), Vec::new()));
            }
        }
        while let Some(key) = self.readable.pop_front() {
            let Some(conn) = self.conns.get_mut(&key) else { continue };
            conn.in_readable = false;
            if !conn.wants_host_input() {
                continue;
            }
            let want = (conn.peer_credit() as usize).min(room);
            if want == 0 {
                // An rx buffer with no room past the header; keep the stream for a bigger one.
                conn.in_readable = true;
                self.readable.push_front(key);
                return None;
            }
            let mut data = vec![0u8; want];
            match conn.stream.read(&mut data) {
                Ok(0) => {
                    conn.host_eof = true;
                    return Some((self.header(key, OP_SHUTDOWN, SHUTDOWN_SEND), Vec::new()));
                }
                Ok(n) => {
                    data.truncate(n);
                    // n <= want <= MAX_PAYLOAD.
                    conn.sent_to_guest(n as u32);
                    // Read until it would block, taking turns with the other streams.
                    conn.in_readable = true;
                    self.readable.push_back(key);
                    if conn.peer_credit() == 0 && !conn.credit_requested {
                        conn.credit_requested = true;
                        self.push_control(key, OP_CREDIT_REQUEST, 0);
                    }
                    return Some((self.header(key, OP_RW, 0), data));
                }
                Err(e) if is_transient(&e) => continue,
                Err(_) => {
                    self.conns.remove(&key);
                    return Some((self.header(key, OP_RST, 0), Vec::new()));
                }
            }
        }
        None
    }

    /// A header from the host side of `key`, carrying our credit if the connection exists.
    fn header(&mut self, key: ConnKey, op: u16, flags: u32) -> Header {
        let (buf_alloc, fwd_cnt) = match self.conns.get_mut(&key) {
            Some(conn) => {
                if op == OP_CREDIT_UPDATE {
                    conn.credit_update_queued = false;
                }
                conn.credit_fields()
            }
            None => (0, 0),
        };
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: key.host_port,
            dst_port: key.guest_port,
            len: 0,
            type_: TYPE_STREAM,
            op,
            flags,
            buf_alloc,
            fwd_cnt,
        }
    }
}
