//! Pipelined throughput: each connection writes a batch of NOOP frames, then waits for every
//! reply, round after round. A writer and a reader thread per connection: small frames written
//! one by one fill a socket's buffer accounting long before their bytes do, so a single thread
//! that wrote everything before reading could deadlock with a server blocked on its own writes.
//! Connections of one server run at once; the two servers take turns in alternating blocks.

use std::io;
use std::path::Path;
use std::sync::{mpsc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{noop_batch, Client};

/// How one throughput run is shaped.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub connections: usize,
    pub rounds: usize,
    pub batch: u32,
    pub blocks: usize,
    pub writes: Writes,
}

/// How a client writes a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// One write per frame, as an SDK sending one request after another does.
    PerFrame,
    /// The whole batch with one write: the client's own cost all but disappears.
    WholeBatch,
}

/// Requests per second against each server of `[clove, raw]`.
pub fn measure(paths: [&Path; 2], shape: Shape) -> io::Result<[f64; 2]> {
    let (batch, frame_len) = noop_batch(shape.batch);
    let frame_len = (shape.writes == Writes::PerFrame).then_some(frame_len);
    let job = Job { batch: &batch, count: shape.batch, frame_len };
    let mut clients = Vec::new();
    for path in paths {
        let conns = (0..shape.connections).map(|_| Client::connect(path)).collect::<io::Result<Vec<_>>>()?;
        clients.push(conns);
    }
    // One untimed round on every connection.
    for conns in &mut clients {
        run_block(conns, job, 1)?;
    }
    let blocks = shape.blocks.clamp(1, shape.rounds.max(1));
    let mut elapsed = [Duration::ZERO; 2];
    let mut rounds_done = 0;
    for block in 0..blocks {
        let rounds = shape.rounds / blocks + usize::from(block < shape.rounds % blocks);
        for (conns, total) in clients.iter_mut().zip(&mut elapsed) {
            *total += run_block(conns, job, rounds)?;
        }
        rounds_done += rounds;
    }
    let requests = (rounds_done * shape.connections) as f64 * f64::from(shape.batch);
    Ok(elapsed.map(|t| requests / t.as_secs_f64().max(f64::MIN_POSITIVE)))
}

/// What every round sends.
#[derive(Clone, Copy)]
struct Job<'a> {
    batch: &'a [u8],
    count: u32,
    frame_len: Option<usize>,
}

/// Runs `rounds` rounds on every connection at once; the time from the first start to the last end.
fn run_block(clients: &mut [Client], job: Job<'_>, rounds: usize) -> io::Result<Duration> {
    let barrier = Barrier::new(clients.len());
    let spans = thread::scope(|scope| {
        let handles: Vec<_> = clients
            .iter_mut()
            .map(|client| {
                let barrier = &barrier;
                scope.spawn(move || run_connection(client, job, rounds, barrier))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("a client thread panicked"))))
            .collect::<io::Result<Vec<_>>>()
    })?;
    let first = spans.iter().map(|s| s.0).min();
    let last = spans.iter().map(|s| s.1).max();
    Ok(match (first, last) {
        (Some(first), Some(last)) => last.duration_since(first),
        _ => Duration::ZERO,
    })
}

/// One connection's rounds: this thread writes, a second one reads and reports each finished round.
fn run_connection(client: &mut Client, job: Job<'_>, rounds: usize, start: &Barrier) -> io::Result<(Instant, Instant)> {
    let (mut writer, mut reader) = client.halves();
    let (round_done, next_round) = mpsc::sync_channel::<()>(1);
    thread::scope(|scope| {
        let reading = scope.spawn(move || -> io::Result<()> {
            for _ in 0..rounds {
                reader.read_replies(job.count)?;
                if round_done.send(()).is_err() {
                    break;
                }
            }
            Ok(())
        });
        start.wait();
        let started = Instant::now();
        let mut written = Ok(());
        for _ in 0..rounds {
            written = writer.write_batch(job.batch, job.frame_len);
            // A reader that failed has hung up; its error is the one reported.
            if written.is_err() || next_round.recv().is_err() {
                break;
            }
        }
        drop(next_round);
        let ended = Instant::now();
        let read = reading.join().unwrap_or_else(|_| Err(io::Error::other("a reader thread panicked")));
        written.and(read).map(|()| (started, ended))
    })
}
