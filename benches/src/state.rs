//! `clove-bench --state`: the state store's round trips beside NOOP's, on one runtime in one run;
//! then durable STOREs (committed to disk before the reply) beside the disk's own floor, a
//! 100-byte write and `fdatasync` each, on the same filesystem.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clove_core::protocol::frame::write_frame;
use clove_core::protocol::{self, KeyRequest, Opcode, Scope, StoreRequest};
use clove_core::runtime::{ListenConfig, Runtime, RuntimeConfig};

use crate::frames::{check_reply, noop_payload, set_request_id, FrameReader};
use crate::roundtrip::{percentiles, Latency};
use crate::Result;

const USAGE: &str = "usage: clove-bench --state [--requests N] [--warmup N] [--blocks N] [--writes N] [--agents N]

  --requests N   sequential round trips per request kind, in memory (default 20000)
  --warmup N     round trips of each kind before measuring (default 2000)
  --blocks N     alternations between the kinds (default 10)
  --writes N     durable STOREs per durable row, and fdatasyncs for the floor (default 300)
  --agents N     connections storing at once in the concurrent durable row (default 16)";

/// Keys the STORE and FETCH rows cycle through (all stored before measuring).
const KEYS: usize = 1_000;
/// The value of every STORE: a small JSON object.
const VALUE_JSON: &str = r#"{"step":12,"status":"running","notes":["a","b"],"score":0.875}"#;

pub struct Options {
    requests: usize,
    warmup: usize,
    blocks: usize,
    writes: usize,
    agents: usize,
}

pub fn parse_args(args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options { requests: 20_000, warmup: 2_000, blocks: 10, writes: 300, agents: 16 };
    for (flag, value) in crate::flag_values(args.filter(|a| a != "--state"), USAGE)? {
        let n = value.parse::<usize>().map_err(|e| format!("{flag} {value}: {e}"))?;
        match flag.as_str() {
            "--requests" => options.requests = n,
            "--warmup" => options.warmup = n,
            "--blocks" => options.blocks = n.max(1),
            "--writes" => options.writes = n.max(1),
            "--agents" => options.agents = n.max(1),
            _ => return Err(format!("unknown option {flag}\n{USAGE}").into()),
        }
    }
    Ok(options)
}

pub struct Results {
    options: Options,
    /// In memory: NOOP, STORE, FETCH.
    memory: [Latency; 3],
    /// Durable: STORE, one agent after another write; FETCH.
    durable_store: Latency,
    durable_fetch: Latency,
    /// STOREs per second: one agent, then `agents` at once.
    durable_rate: [f64; 2],
    /// The disk's floor: one 100-byte write and fdatasync, its latency and rate.
    fsync: Latency,
    fsync_rate: f64,
}

/// A connection that sends prepared request frames one at a time.
struct Agent {
    stream: UnixStream,
    reader: FrameReader,
    next_id: u32,
}

impl Agent {
    fn connect(path: &Path) -> io::Result<Agent> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Agent { stream, reader: FrameReader::new(), next_id: 1 })
    }

    /// One request and its reply, timed from before the write to after the reply is read.
    fn round_trip(&mut self, frame: &mut [u8]) -> io::Result<Duration> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        set_request_id(frame, id);
        let started = Instant::now();
        self.stream.write_all(frame)?;
        let header = self.reader.next_frame(&mut self.stream)?;
        let elapsed = started.elapsed();
        check_reply(&header, id)?;
        Ok(elapsed)
    }
}

fn frame(op: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, op as u8, 0, 0, payload);
    out
}

/// One prepared frame per key, for `op`.
fn frames(op: Opcode) -> Vec<Vec<u8>> {
    (0..KEYS)
        .map(|i| {
            let key = format!("bench:{i:04}");
            let payload = match op {
                Opcode::STORE => protocol::encode(&StoreRequest {
                    key,
                    value_json: VALUE_JSON.into(),
                    scope: Scope::Global,
                    ttl_ms: None,
                }),
                _ => protocol::encode(&KeyRequest { key, scope: None }),
            };
            frame(op, &payload)
        })
        .collect()
}

/// A runtime serving on `dir/name.sock`, durable in `state` if given.
fn runtime(dir: &Path, name: &str, state: Option<PathBuf>) -> Result<(Runtime, PathBuf)> {
    let runtime = Runtime::start(RuntimeConfig { state_path: state, ..RuntimeConfig::default() })?;
    let socket = dir.join(format!("{name}.sock"));
    runtime.listen(ListenConfig::new(&socket))?;
    Ok((runtime, socket))
}

/// `count` round trips cycling through `frames`.
fn round_trips(agent: &mut Agent, frames: &mut [Vec<u8>], count: usize) -> io::Result<Vec<Duration>> {
    (0..count).map(|i| agent.round_trip(&mut frames[i % frames.len()])).collect()
}

pub fn run(options: Options, dir: &Path) -> Result<Results> {
    let mut noop = vec![frame(Opcode::NOOP, &noop_payload())];
    let (mut stores, mut fetches) = (frames(Opcode::STORE), frames(Opcode::FETCH));

    // In memory: NOOP, STORE and FETCH in alternating blocks on one connection.
    let (memory_runtime, socket) = runtime(dir, "memory", None)?;
    let mut agent = Agent::connect(&socket)?;
    round_trips(&mut agent, &mut stores, KEYS)?;
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for kinds in [&mut noop, &mut stores, &mut fetches] {
        round_trips(&mut agent, kinds, options.warmup)?;
    }
    for block in 0..options.blocks {
        let size = options.requests / options.blocks + usize::from(block < options.requests % options.blocks);
        for (kinds, times) in [&mut noop, &mut stores, &mut fetches].into_iter().zip(&mut samples) {
            times.extend(round_trips(&mut agent, kinds, size)?);
        }
    }
    drop((agent, memory_runtime));
    let [n, s, f] = samples;
    let memory = [percentiles(n), percentiles(s), percentiles(f)];

    // Durable: each STORE waits for its commit; FETCH is served from memory.
    let (durable_runtime, socket) = runtime(dir, "durable", Some(dir.join("state.redb")))?;
    let mut agent = Agent::connect(&socket)?;
    let started = Instant::now();
    let times = round_trips(&mut agent, &mut stores, options.writes)?;
    let one_rate = options.writes as f64 / started.elapsed().as_secs_f64();
    let durable_store = percentiles(times);
    let durable_fetch = percentiles(round_trips(&mut agent, &mut fetches, options.requests.min(KEYS * 5))?);
    let many_rate = concurrent_stores(&socket, options.agents, options.writes)?;
    drop((agent, durable_runtime));

    let (fsync, fsync_rate) = fsync_floor(&dir.join("floor.bin"), options.writes)?;
    Ok(Results {
        options,
        memory,
        durable_store,
        durable_fetch,
        durable_rate: [one_rate, many_rate],
        fsync,
        fsync_rate,
    })
}

/// `agents` connections storing at once, `writes` STOREs in all; STOREs per second.
fn concurrent_stores(socket: &Path, agents: usize, writes: usize) -> Result<f64> {
    let each = writes.div_ceil(agents);
    let mut connections = (0..agents).map(|_| Agent::connect(socket)).collect::<io::Result<Vec<_>>>()?;
    let started = Instant::now();
    std::thread::scope(|scope| {
        let threads: Vec<_> = connections
            .iter_mut()
            .enumerate()
            .map(|(n, agent)| {
                scope.spawn(move || {
                    let mut own: Vec<Vec<u8>> = frames(Opcode::STORE).into_iter().skip(n).step_by(agents).collect();
                    round_trips(agent, &mut own, each).map(drop)
                })
            })
            .collect();
        threads.into_iter().try_for_each(|t| t.join().map_err(|_| io::Error::other("a client thread panicked"))?)
    })?;
    Ok((each * agents) as f64 / started.elapsed().as_secs_f64())
}

/// The disk's floor: `count` times a 100-byte write and `fdatasync`.
fn fsync_floor(path: &Path, count: usize) -> io::Result<(Latency, f64)> {
    let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(path)?;
    let record = [0x42u8; 100];
    let started = Instant::now();
    let mut times = Vec::with_capacity(count);
    for i in 0..count {
        let t = Instant::now();
        file.write_all_at(&record, (i * record.len()) as u64)?;
        file.sync_data()?;
        times.push(t.elapsed());
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(path);
    Ok((percentiles(times), rate))
}

pub fn render(r: &Results) -> String {
    let o = &r.options;
    let us = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6);
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    let ratio = |a: f64, b: f64| format!("{:.2}×", a / b.max(f64::MIN_POSITIVE));
    let [noop, store, fetch] = r.memory;
    let per_s = |rate: f64| format!("{rate:.0} /s");
    let rows = [
        ["NOOP round trip p50 / p99".into(), format!("{} / {}", us(noop.p50), us(noop.p99)), "—".into(), "—".into()],
        row_vs_noop("STORE round trip p50 / p99, in memory", store, noop, us),
        row_vs_noop("FETCH round trip p50 / p99, in memory", fetch, noop, us),
        row_vs_noop("FETCH round trip p50 / p99, durable store", r.durable_fetch, noop, us),
        [
            "durable STORE round trip p50 / p99, 1 agent".into(),
            format!("{} / {}", ms(r.durable_store.p50), ms(r.durable_store.p99)),
            format!("write + fdatasync {} / {}", ms(r.fsync.p50), ms(r.fsync.p99)),
            ratio(r.durable_store.p50.as_secs_f64(), r.fsync.p50.as_secs_f64()),
        ],
        [
            "durable STOREs per second, 1 agent".into(),
            per_s(r.durable_rate[0]),
            format!("fdatasyncs {}", per_s(r.fsync_rate)),
            ratio(r.durable_rate[0], r.fsync_rate),
        ],
        [
            format!("durable STOREs per second, {} agents at once", o.agents),
            per_s(r.durable_rate[1]),
            format!("fdatasyncs {}", per_s(r.fsync_rate)),
            ratio(r.durable_rate[1], r.fsync_rate),
        ],
    ];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## The state store — {} round trips per kind in memory, {} durable STOREs per row\n",
        o.requests, o.writes
    );
    let _ = writeln!(out, "| measure | Clove | beside | ratio |\n|---|---|---|---|");
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    let _ = writeln!(
        out,
        "\nValues are {} bytes of JSON under {KEYS} keys. A durable STORE is answered once redb has committed it; \
         STOREs waiting together share one commit.",
        VALUE_JSON.len()
    );
    out
}

fn row_vs_noop(name: &str, l: Latency, noop: Latency, us: impl Fn(Duration) -> String) -> [String; 4] {
    let ratio = l.p50.as_secs_f64() / noop.p50.as_secs_f64().max(f64::MIN_POSITIVE);
    [name.into(), format!("{} / {}", us(l.p50), us(l.p99)), format!("NOOP {}", us(noop.p50)), format!("{ratio:.2}×")]
}
