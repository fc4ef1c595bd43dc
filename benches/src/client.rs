//! A blocking protocol client on one connection, used unchanged against both servers.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::frames::{check_reply, noop_payload, push_noop, set_request_id, FrameReader};

/// A client waits this long for a reply (or for room to write) before the run is declared stuck.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Client {
    stream: UnixStream,
    /// The same socket, for a writer thread while another thread reads replies.
    writer: UnixStream,
    reader: FrameReader,
    /// One NOOP frame, its request id rewritten for every round trip.
    noop: Vec<u8>,
    next_id: u32,
}

impl Client {
    pub fn connect(path: &Path) -> io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let writer = stream.try_clone()?;
        let mut noop = Vec::new();
        push_noop(&mut noop, &noop_payload(), 0);
        Ok(Client { stream, writer, reader: FrameReader::new(), noop, next_id: 1 })
    }

    /// One NOOP request and its reply; the time from before the write to after the reply is read.
    pub fn round_trip(&mut self) -> io::Result<Duration> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        set_request_id(&mut self.noop, id);
        let started = Instant::now();
        self.stream.write_all(&self.noop)?;
        let header = self.reader.next_frame(&mut self.stream)?;
        let elapsed = started.elapsed();
        check_reply(&header, id)?;
        Ok(elapsed)
    }

    /// The writing and the reading side, for two threads.
    pub fn halves(&mut self) -> (WriteHalf<'_>, ReadHalf<'_>) {
        (WriteHalf(&mut self.writer), ReadHalf { stream: &mut self.stream, reader: &mut self.reader })
    }
}

pub struct WriteHalf<'a>(&'a mut UnixStream);

impl WriteHalf<'_> {
    /// Writes a batch built by [`noop_batch`]: each frame with its own write when `frame_len` is
    /// given (as an SDK sending one request after another does), else all of it with one.
    pub fn write_batch(&mut self, batch: &[u8], frame_len: Option<usize>) -> io::Result<()> {
        match frame_len {
            Some(len) => batch.chunks(len).try_for_each(|frame| self.0.write_all(frame)),
            None => self.0.write_all(batch),
        }
    }
}

pub struct ReadHalf<'a> {
    stream: &'a mut UnixStream,
    reader: &'a mut FrameReader,
}

impl ReadHalf<'_> {
    /// Reads the replies to a batch of `count` requests, in order.
    pub fn read_replies(&mut self, count: u32) -> io::Result<()> {
        for id in 0..count {
            let header = self.reader.next_frame(self.stream)?;
            check_reply(&header, id)?;
        }
        Ok(())
    }
}

/// `count` NOOP frames with request ids `0..count`, back to back, and the length of one frame.
pub fn noop_batch(count: u32) -> (Vec<u8>, usize) {
    let payload = noop_payload();
    let mut batch = Vec::new();
    for id in 0..count {
        push_noop(&mut batch, &payload, id);
    }
    let frame_len = batch.len() / (count.max(1) as usize);
    (batch, frame_len)
}
