//! `clove-bench`: Clove's embedded runtime beside a raw Unix-socket echo server, in one process and
//! one run, printed as a Markdown table of ratios. Nothing here fails on a slow figure: a target
//! that is missed is reported, not enforced.
//!
//! Order of a run: the memory footprint first (before anything else has grown the process), then a
//! fresh runtime and the raw echo side by side for round trips and pipelined throughput.
//!
//! `clove-bench --spawn` is a second mode: spawn latency of Clove's plain and sandboxed agents next
//! to fork+exec, bwrap and unshare(1), and of a Python agent next to the interpreter's own start
//! (`src/spawn.rs`).
//!
//! `clove-bench --fair` is a third: the fair LLM queue beside FIFO, simulated on its injected clock
//! (`src/fair.rs`).
//!
//! `clove-bench --state` is a fourth: the state store's STORE and FETCH round trips beside NOOP, and
//! durable writes per second beside the disk's fdatasync rate (`src/state.rs`).
//!
//! `clove-bench --think` is a fifth: THINK end to end against a loopback fake provider, fair order
//! beside arrival order (`src/think.rs`).
//!
//! `clove-bench --vm` is a sixth, for the emulated SVM machine of `tests/nested`: Clove's microVMs
//! beside QEMU microvm (boot to ready, EXEC, memory, concurrent starts); `--vm-entry` times /dev/kvm
//! open to the first guest instruction on any KVM (`src/vm/`).

mod client;
mod echo;
mod fair;
mod frames;
mod memory;
mod pipeline;
mod roundtrip;
mod spawn;
mod state;
mod table;
mod think;
mod vm;

use std::path::PathBuf;

use clove_core::runtime::{ListenConfig, Runtime, RuntimeConfig};

use client::Client;
use echo::RawEcho;
use pipeline::Writes;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, BoxError>;

const USAGE: &str = "usage: clove-bench --spawn [--runs N] [--warmup N]   (spawn latency; --spawn --help)
       clove-bench --fair [--minutes N] [--seed N]    (fair LLM queue vs FIFO, simulated; --fair --help)
       clove-bench --state [--requests N] [--writes N] [--agents N]   (state store; --state --help)
       clove-bench --think                           (THINK end to end, fair vs arrival order)
       clove-bench --vm [--boots N] ...              (microVMs vs QEMU, in the nested machine; --vm --help)
       clove-bench --vm-entry [--runs N]             (/dev/kvm open to the first guest instruction)
       clove-bench [--mode LABEL] [--requests N] [--warmup N] [--rounds N] \
[--batch N] [--agents N] [--blocks N]

  --mode LABEL   names the run in the table heading, e.g. pinned or unpinned (default: run)
  --requests N   sequential NOOP round trips measured per server (default 20000)
  --warmup N     round trips before measuring (default 2000)
  --rounds N     pipelined rounds per connection (default 50)
  --batch N      frames written before the replies are read, per round (default 1000)
  --agents N     agents running `sleep 60` for the memory figure (default 50)
  --blocks N     alternations between Clove and the raw echo (default 10)";

struct Options {
    mode: String,
    requests: usize,
    warmup: usize,
    rounds: usize,
    batch: u32,
    agents: usize,
    blocks: usize,
}

fn parse_args() -> Result<Options> {
    let mut options = Options {
        mode: "run".into(),
        requests: 20_000,
        warmup: 2_000,
        rounds: 50,
        batch: 1_000,
        agents: 50,
        blocks: 10,
    };
    for (flag, value) in flag_values(std::env::args().skip(1), USAGE)? {
        let number = || value.parse::<usize>().map_err(|e| format!("{flag} {value}: {e}"));
        match flag.as_str() {
            "--mode" => options.mode = value.clone(),
            "--requests" => options.requests = number()?,
            "--warmup" => options.warmup = number()?,
            "--rounds" => options.rounds = number()?,
            "--batch" => options.batch = u32::try_from(number()?)?,
            "--agents" => options.agents = number()?,
            "--blocks" => options.blocks = number()?,
            _ => return Err(format!("unknown option {flag}\n{USAGE}").into()),
        }
    }
    Ok(options)
}

/// The CPUs this process may run on, as the kernel lists them.
fn allowed_cpus() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

/// A scratch directory for the two sockets, removed when dropped.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(options: &Options) -> Result<table::Results> {
    let dir = ScratchDir(std::env::temp_dir().join(format!("clove-bench-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let memory = memory::measure(&dir.0.join("memory.sock"), options.agents)?;

    let clove_path = dir.0.join("clove.sock");
    let runtime = Runtime::start(RuntimeConfig::default())?;
    runtime.listen(ListenConfig::new(&clove_path))?;
    let raw = RawEcho::start(&dir.0.join("echo.sock"))?;

    let mut clove_client = Client::connect(&clove_path)?;
    let mut raw_client = Client::connect(raw.path())?;
    let latency =
        roundtrip::measure([&mut clove_client, &mut raw_client], options.warmup, options.requests, options.blocks)?;
    drop((clove_client, raw_client));

    let paths = [clove_path.as_path(), raw.path()];
    let shape = |connections, writes| pipeline::Shape {
        connections,
        rounds: options.rounds,
        batch: options.batch,
        blocks: options.blocks,
        writes,
    };
    let pipelined_one = pipeline::measure(paths, shape(1, Writes::WholeBatch))?;
    let pipelined_four = pipeline::measure(paths, shape(4, Writes::WholeBatch))?;
    let per_frame_four = pipeline::measure(paths, shape(4, Writes::PerFrame))?;
    Ok(table::Results { latency, pipelined_one, pipelined_four, per_frame_four, memory })
}

fn spawn_main() {
    let result = spawn::parse_args(std::env::args().skip(1)).and_then(|options| spawn::run(&options));
    match result {
        Ok(results) => println!("{}", spawn::render(&results)),
        Err(e) => {
            eprintln!("clove-bench --spawn: {e}");
            std::process::exit(1);
        }
    }
}

fn fair_main() {
    let result = fair::parse_args(std::env::args().skip(1)).and_then(|options| fair::run(&options));
    match result {
        Ok(results) => println!("{}", fair::render(&results)),
        Err(e) => {
            eprintln!("clove-bench --fair: {e}");
            std::process::exit(1);
        }
    }
}

fn state_main() {
    let result = state::parse_args(std::env::args().skip(1)).and_then(|options| {
        let dir = ScratchDir(std::env::temp_dir().join(format!("clove-bench-state-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0)?;
        state::run(options, &dir.0)
    });
    match result {
        Ok(results) => println!("{}", state::render(&results)),
        Err(e) => {
            eprintln!("clove-bench --state: {e}");
            std::process::exit(1);
        }
    }
}

fn think_main() {
    let dir = ScratchDir(std::env::temp_dir().join(format!("clove-bench-think-{}", std::process::id())));
    let result = std::fs::create_dir_all(&dir.0).map_err(Into::into).and_then(|()| think::run(&dir.0));
    match result {
        Ok(results) => println!("{}", think::render(&results)),
        Err(e) => {
            eprintln!("clove-bench --think: {e}");
            std::process::exit(1);
        }
    }
}

fn main() {
    if std::env::args().skip(1).any(|a| a == "--vm") {
        return vm::main();
    }
    if std::env::args().skip(1).any(|a| a == "--vm-entry") {
        return vm::entry_main();
    }
    if std::env::args().skip(1).any(|a| a == "--spawn") {
        return spawn_main();
    }
    if std::env::args().skip(1).any(|a| a == "--think") {
        return think_main();
    }
    if std::env::args().skip(1).any(|a| a == "--fair") {
        return fair_main();
    }
    if std::env::args().skip(1).any(|a| a == "--state") {
        return state_main();
    }
    let options = match parse_args() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("clove-bench: {e}");
            std::process::exit(2);
        }
    };
    let cpus = allowed_cpus();
    match run(&options) {
        Ok(results) => {
            let heading = format!(
                "Clove vs raw Unix-socket echo — {} (CPUs {cpus}; {} round trips, {} rounds × {} frames)",
                options.mode, options.requests, options.rounds, options.batch
            );
            println!("{}", table::render(&heading, &results));
        }
        Err(e) => {
            eprintln!("clove-bench ({}): {e}", options.mode);
            std::process::exit(1);
        }
    }
}

/// `--flag value` pairs from the command line; `-h`/`--help` prints `usage` and exits.
pub fn flag_values(args: impl Iterator<Item = String>, usage: &str) -> Result<Vec<(String, String)>> {
    let mut args = args;
    let mut pairs = Vec::new();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{usage}");
            std::process::exit(0);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value\n{usage}"))?;
        pairs.push((flag, value));
    }
    Ok(pairs)
}
