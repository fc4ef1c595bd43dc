//! `clove-bench --think`: THINK end to end, fair order beside arrival order in one run. Ten agents
//! connect to a runtime whose provider is a fake OpenAI-compatible server on loopback with a fixed
//! service rate (every call takes `SERVICE` and reports the same usage), and which lets
//! `SLOTS` calls run at once. Nine light agents keep one THINK outstanding; the greedy agent keeps
//! ten, so it asks ten times as often. After a warm-up, each agent's answered calls over the
//! window give Jain's fairness index (all calls cost the same) and the provider's utilisation.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use clove_core::protocol::{encode, frame, Opcode, ThinkRequest};
use clove_core::runtime::{ListenConfig, ProviderConfig, ProviderKind, Runtime, RuntimeConfig, ThinkOrder};

use crate::frames::FrameReader;
use crate::Result;

const AGENTS: usize = 10;
const GREEDY_OUTSTANDING: usize = 10;
const SLOTS: usize = 2;
/// How long the fake provider takes for every call: a fixed service rate of SLOTS / SERVICE.
const SERVICE: Duration = Duration::from_millis(20);
const WARMUP: Duration = Duration::from_secs(1);
const WINDOW: Duration = Duration::from_secs(4);
const JAIN_MIN: f64 = 0.99;
const UTILISATION_MIN: f64 = 0.95;

/// What one run measured.
pub struct Outcome {
    /// Calls answered within the window, per agent (the greedy one first).
    answered: Vec<u64>,
    /// Median time from asking to the answer, light agents and the greedy one.
    light_p50: Duration,
    greedy_p50: Duration,
}

pub struct Results {
    fair: Outcome,
    arrival: Outcome,
}

pub fn run(scratch: &Path) -> Result<Results> {
    let provider = FakeProvider::start()?;
    let fair = run_once(&provider, ThinkOrder::Fair, &scratch.join("fair.sock"))?;
    let arrival = run_once(&provider, ThinkOrder::Arrival, &scratch.join("arrival.sock"))?;
    Ok(Results { fair, arrival })
}

fn run_once(provider: &FakeProvider, order: ThinkOrder, socket: &Path) -> Result<Outcome> {
    let mut config = RuntimeConfig::default();
    let mut llm = ProviderConfig::new(ProviderKind::OpenAi);
    llm.base_url = format!("http://{}/v1", provider.address);
    llm.api_key = Some("bench".into());
    llm.model = "fake".into();
    config.net.llm = Some(llm);
    config.net.think_workers = SLOTS;
    config.net.think_order = order;
    let runtime = Runtime::start(config)?;
    runtime.listen(ListenConfig::new(socket))?;
    let started = Instant::now();
    let agents: Vec<_> = (0..AGENTS)
        .map(|i| {
            let outstanding = if i == 0 { GREEDY_OUTSTANDING } else { 1 };
            let socket = socket.to_path_buf();
            std::thread::spawn(move || agent(&socket, outstanding, started))
        })
        .collect();
    let mut answered = Vec::new();
    let (mut light, mut greedy) = (Vec::new(), Vec::new());
    for (i, thread) in agents.into_iter().enumerate() {
        let times = thread.join().map_err(|_| "an agent thread panicked")??;
        answered.push(times.len() as u64);
        if i == 0 { &mut greedy } else { &mut light }.extend(times);
    }
    drop(runtime);
    Ok(Outcome { answered, light_p50: median(light), greedy_p50: median(greedy) })
}

/// One agent: keeps `outstanding` THINKs in flight; returns how long each one answered within
/// the window took.
fn agent(socket: &Path, outstanding: usize, started: Instant) -> Result<Vec<Duration>> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let payload = encode(&ThinkRequest { prompt: "the same question every time".into(), ..Default::default() });
    let mut asked: std::collections::BTreeMap<u32, Instant> = Default::default();
    let mut next_id = 1u32;
    let mut ask = |stream: &mut UnixStream, asked: &mut std::collections::BTreeMap<u32, Instant>| {
        let mut out = Vec::new();
        frame::write_frame(&mut out, Opcode::THINK as u8, 0, next_id, &payload);
        asked.insert(next_id, Instant::now());
        next_id += 1;
        stream.write_all(&out)
    };
    for _ in 0..outstanding {
        ask(&mut stream, &mut asked)?;
    }
    let mut reader = FrameReader::new();
    let mut times = Vec::new();
    let end = WARMUP + WINDOW;
    while started.elapsed() < end {
        let header = reader.next_frame(&mut stream)?;
        if header.is_error() {
            return Err(format!("THINK {} was answered with an error", header.request_id).into());
        }
        let since = asked.remove(&header.request_id).ok_or("an answer to a request never made")?;
        let now = started.elapsed();
        if now >= WARMUP && now < end {
            times.push(since.elapsed());
        }
        ask(&mut stream, &mut asked)?;
    }
    Ok(times)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// Jain's index: 1 when every agent got the same, 1/n when one got everything.
fn jain(values: &[u64]) -> f64 {
    let sum: f64 = values.iter().map(|&v| v as f64).sum();
    let squares: f64 = values.iter().map(|&v| (v as f64).powi(2)).sum();
    if squares == 0.0 {
        return 0.0;
    }
    sum * sum / (values.len() as f64 * squares)
}

fn utilisation(o: &Outcome) -> f64 {
    let busy = o.answered.iter().sum::<u64>() as f64 * SERVICE.as_secs_f64();
    busy / (SLOTS as f64 * WINDOW.as_secs_f64())
}

fn greedy_share(o: &Outcome) -> f64 {
    o.answered[0] as f64 / o.answered.iter().sum::<u64>().max(1) as f64
}

pub fn render(r: &Results) -> String {
    let (f, a) = (&r.fair, &r.arrival);
    let verdict = |met: bool| if met { "(met)" } else { "(**missed**)" };
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## THINK end to end: {AGENTS} agents, one asking 10× as often, a loopback provider with {SLOTS} slots \
         of {} ms ({} s measured after {} s)\n",
        SERVICE.as_millis(),
        WINDOW.as_secs(),
        WARMUP.as_secs()
    );
    let _ = writeln!(out, "| measure | fair (VTC) | arrival (FIFO) | target |");
    let _ = writeln!(out, "|---|---|---|---|");
    let (jf, ja) = (jain(&f.answered), jain(&a.answered));
    let _ = writeln!(
        out,
        "| Jain's index over the agents' answered calls | {jf:.4} | {ja:.4} | fair ≥ {JAIN_MIN} {} |",
        verdict(jf >= JAIN_MIN)
    );
    let _ = writeln!(
        out,
        "| greedy agent's share | {:.1} % | {:.1} % | fair: {:.1} % |",
        greedy_share(f) * 100.0,
        greedy_share(a) * 100.0,
        100.0 / AGENTS as f64
    );
    let (uf, ua) = (utilisation(f), utilisation(a));
    let _ = writeln!(
        out,
        "| provider utilisation | {:.1} % | {:.1} % | ≥ {:.0} % {} |",
        uf * 100.0,
        ua * 100.0,
        UTILISATION_MIN * 100.0,
        verdict(uf >= UTILISATION_MIN)
    );
    let _ = writeln!(out, "| answer time p50, light agents | {} | {} | — |", ms(f.light_p50), ms(a.light_p50));
    let _ = writeln!(out, "| answer time p50, greedy agent | {} | {} | — |", ms(f.greedy_p50), ms(a.greedy_p50));
    out
}

/// An OpenAI-compatible chat completions server on loopback that answers every call after
/// `SERVICE`, one thread per connection (the runtime keeps connections alive).
struct FakeProvider {
    address: String,
}

impl FakeProvider {
    fn start() -> Result<FakeProvider> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?.to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve(stream));
            }
        });
        Ok(FakeProvider { address })
    }
}

fn serve(stream: TcpStream) {
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    let body = r#"{"model":"fake","choices":[{"message":{"role":"assistant","content":"an answer"}}],"usage":{"prompt_tokens":100,"completion_tokens":50}}"#;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut request = vec![0; length];
        if reader.read_exact(&mut request).is_err() {
            return;
        }
        std::thread::sleep(SERVICE);
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
