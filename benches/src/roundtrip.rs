//! Sequential NOOP round trips on one connection per server, in alternating blocks so that both
//! servers see the same machine noise.

use std::io;
use std::time::Duration;

use crate::client::Client;

/// Latency percentiles of one server.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
}

/// Round trips against `[clove, raw]`: `warmup` each, then `requests` each in `blocks` alternating
/// blocks.
pub fn measure(clients: [&mut Client; 2], warmup: usize, requests: usize, blocks: usize) -> io::Result<[Latency; 2]> {
    let [clove, raw] = clients;
    for _ in 0..warmup {
        clove.round_trip()?;
        raw.round_trip()?;
    }
    let blocks = blocks.clamp(1, requests.max(1));
    let mut samples = [Vec::with_capacity(requests), Vec::with_capacity(requests)];
    for block in 0..blocks {
        let size = requests / blocks + usize::from(block < requests % blocks);
        for (client, times) in [&mut *clove, &mut *raw].into_iter().zip(&mut samples) {
            for _ in 0..size {
                times.push(client.round_trip()?);
            }
        }
    }
    let [c, r] = samples;
    Ok([percentiles(c), percentiles(r)])
}

pub fn percentiles(mut times: Vec<Duration>) -> Latency {
    times.sort_unstable();
    let at = |q: f64| {
        let last = times.len().saturating_sub(1);
        times.get(((last as f64) * q).round() as usize).copied().unwrap_or_default()
    };
    Latency { p50: at(0.50), p99: at(0.99) }
}
