//! `clove-bench --vm`: the microVM benchmark, meant to run inside the emulated SVM machine of
//! `tests/nested` (a real, nested /dev/kvm). Clove's VMM beside QEMU `-M microvm -accel kvm`
//! booting the same kernel and initramfs in the same run: boot to guest-agent-ready, EXEC round
//! trip, host memory per idle VM, and several VMs started at once. Readiness is the same event on
//! both sides: the guest agent's HELLO frame arriving on host vsock port 1024.
//!
//! `clove-bench --vm-entry` runs on any host with /dev/kvm (this one's kvm_pvm included): the time
//! from opening /dev/kvm to the first guest instruction (`entry.rs`).

mod clove;
mod entry;
mod mem;
mod qemu;
mod table;
mod vsock;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clove_core::protocol::frame::{parse_header, write_frame, HEADER_LEN};
use clove_core::protocol::{self, ExecReply, ExecRequest, FrameHeader, Opcode, DEFAULT_MAX_PAYLOAD};

use crate::Result;

pub use entry::main as entry_main;

/// The guest agent's port, on the host (HELLO) and in the guest (the control port).
pub const AGENT_PORT: u32 = 1024;
/// No boot, exec or accept waits longer than this: a hung guest fails the run instead of stalling it.
pub const DEADLINE: Duration = Duration::from_secs(120);

const USAGE: &str = "usage: clove-bench --vm [--boots N] [--execs N] [--idle N] [--concurrent N] \
[--concurrent-runs N] [--memory MIB] [--console 0|1] [--dmesg 0|1] [--cmdline EXTRA]

Needs CLOVE_GUEST_VMLINUX and CLOVE_GUEST_INITRAMFS (the guest kernel and initramfs) and a /dev/kvm
that boots Linux. QEMU is the anchor when CLOVE_BENCH_QEMU holds its command line prefix (e.g.
`/q/ld-linux-x86-64.so.2 --library-path /q/lib /q/qemu-system-x86_64 -L /q/share`) or
qemu-system-x86_64 is on PATH.

  --boots N            sequential cold boots per VMM, median reported (default 5)
  --execs N            EXEC round trips (`echo hi`) in one running VM, median reported (default 50)
  --idle N             idle VMs held at once for the memory figure (default 5)
  --concurrent N       VMs started at once (default 10)
  --concurrent-runs N  rounds of that, median reported (default 2)
  --memory MIB         guest RAM of every VM (default 128); one vCPU each
  --console 0|1        guest console on (a serial log; slower boots, for debugging) (default 0)
  --dmesg 0|1          first, one unmeasured Clove boot whose host-side phases and guest kernel log
                       (`dmesg` by EXEC, console off) go to stderr: where boot time goes (default 0)
  --cmdline EXTRA      appended to every guest's kernel command line, both VMMs (e.g. initcall_debug)";

pub struct Options {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub qemu: Option<Vec<String>>,
    pub boots: usize,
    pub execs: usize,
    pub idle: usize,
    pub concurrent: usize,
    pub concurrent_runs: usize,
    pub memory_mib: u32,
    pub console: bool,
    pub dmesg: bool,
    pub cmdline_extra: String,
}

fn parse_args() -> Result<Options> {
    let env_path =
        |name: &str| std::env::var_os(name).map(PathBuf::from).ok_or_else(|| format!("{name} is not set\n{USAGE}"));
    let mut o = Options {
        kernel: env_path("CLOVE_GUEST_VMLINUX")?,
        initramfs: env_path("CLOVE_GUEST_INITRAMFS")?,
        qemu: qemu::command_prefix(),
        boots: 5,
        execs: 50,
        idle: 5,
        concurrent: 10,
        concurrent_runs: 2,
        memory_mib: 128,
        console: false,
        dmesg: false,
        cmdline_extra: String::new(),
    };
    let args = std::env::args().skip(1).filter(|a| a != "--vm");
    for (flag, value) in crate::flag_values(args, USAGE)? {
        let n = || value.parse::<usize>().map_err(|e| format!("{flag} {value}: {e}"));
        match flag.as_str() {
            "--boots" => o.boots = n()?.max(1),
            "--execs" => o.execs = n()?.max(1),
            "--idle" => o.idle = n()?.max(1),
            "--concurrent" => o.concurrent = n()?.max(1),
            "--concurrent-runs" => o.concurrent_runs = n()?.max(1),
            "--memory" => o.memory_mib = u32::try_from(n()?)?,
            "--console" => o.console = n()? != 0,
            "--dmesg" => o.dmesg = n()? != 0,
            "--cmdline" => o.cmdline_extra = value,
            _ => return Err(format!("unknown option {flag}\n{USAGE}").into()),
        }
    }
    Ok(o)
}

/// A VMM under test; every VM has one vCPU and `--memory` MiB, and runs the same guest.
pub trait Vmm {
    fn name(&self) -> &'static str;
    /// One cold boot: from creating the VM to its guest agent's HELLO.
    fn boot(&mut self) -> Result<Duration>;
    /// `n` EXEC round trips in one running VM.
    fn exec(&mut self, n: usize) -> Result<Vec<Duration>>;
    /// Host memory with `n` idle VMs.
    fn idle(&mut self, n: usize) -> Result<Idle>;
    /// `n` VMs started at once: the wall time until the last one is ready.
    fn concurrent(&mut self, n: usize) -> Result<Duration>;
}

/// Host memory per idle VM, in KiB.
pub struct Idle {
    /// Host resident memory beyond the guest's own touched pages.
    pub overhead_kib: f64,
    /// The same counting only pages private to the VMM's process (a separate process per VM).
    pub private_kib: Option<f64>,
    /// The guest's RAM pages that are resident (touched).
    pub guest_kib: f64,
}

/// What one VMM measured; an `Err` is printed in its cell.
pub struct Figures {
    pub boot: Result<Vec<Duration>>,
    pub exec: Result<Vec<Duration>>,
    pub idle: Result<Idle>,
    pub concurrent: Result<Vec<Duration>>,
}

/// Runs each phase on every VMM in turn (boots alternate), so both see the same machine.
fn measure(o: &Options, vmms: &mut [Box<dyn Vmm + '_>]) -> Vec<Figures> {
    let mut boots: Vec<Result<Vec<Duration>>> = vmms.iter().map(|_| Ok(Vec::new())).collect();
    for round in 0..o.boots {
        for (vmm, times) in vmms.iter_mut().zip(&mut boots) {
            if let Ok(list) = times {
                match vmm.boot() {
                    Ok(t) => list.push(t),
                    Err(e) => *times = Err(e),
                }
                eprintln!("vm: {} boot {}: {}", vmm.name(), round + 1, show(times.as_ref().map(|l| l.last().copied())));
            }
        }
    }
    let mut concurrent: Vec<Result<Vec<Duration>>> = vmms.iter().map(|_| Ok(Vec::new())).collect();
    for round in 0..o.concurrent_runs {
        for (vmm, times) in vmms.iter_mut().zip(&mut concurrent) {
            if let Ok(list) = times {
                match vmm.concurrent(o.concurrent) {
                    Ok(t) => list.push(t),
                    Err(e) => *times = Err(e),
                }
                eprintln!(
                    "vm: {} {} at once, round {}: {}",
                    vmm.name(),
                    o.concurrent,
                    round + 1,
                    show(times.as_ref().map(|l| l.last().copied()))
                );
            }
        }
    }
    let mut out = Vec::new();
    for (vmm, (boot, concurrent)) in vmms.iter_mut().zip(boots.into_iter().zip(concurrent)) {
        let exec = vmm.exec(o.execs);
        eprintln!("vm: {} EXEC: {}", vmm.name(), show(exec.as_ref().map(|l| Some(median(l)))));
        let idle = vmm.idle(o.idle);
        eprintln!(
            "vm: {} idle: {}",
            vmm.name(),
            match &idle {
                Ok(i) => format!("{:.0} KiB per VM", i.overhead_kib),
                Err(e) => e.to_string(),
            }
        );
        out.push(Figures { boot, exec, idle, concurrent });
    }
    out
}

fn show(time: std::result::Result<Option<Duration>, &crate::BoxError>) -> String {
    match time {
        Ok(Some(t)) => format!("{:.1} ms", t.as_secs_f64() * 1e3),
        Ok(None) => "-".into(),
        Err(e) => format!("FAILED: {e}"),
    }
}

pub fn main() {
    let result = parse_args().map(|o| {
        if o.dmesg {
            match clove::boot_log(&o) {
                Ok(log) => eprintln!("{log}"),
                Err(e) => eprintln!("vm: the --dmesg boot failed: {e}"),
            }
        }
        let mut vmms: Vec<Box<dyn Vmm + '_>> = vec![Box::new(clove::Clove { options: &o })];
        let qemu = match &o.qemu {
            None => Err("n/a (no qemu-system-x86_64 on PATH, CLOVE_BENCH_QEMU unset)".to_string()),
            Some(prefix) => {
                eprintln!("vm: QEMU is {}", prefix.join(" "));
                qemu::Qemu::new(&o, prefix).map_err(|e| format!("n/a ({e})"))
            }
        };
        let absent = match qemu {
            Ok(qemu) => {
                vmms.push(Box::new(qemu));
                None
            }
            Err(why) => Some(why),
        };
        let figures = measure(&o, &mut vmms);
        drop(vmms);
        let failed =
            figures.iter().any(|f| f.boot.is_err() || f.exec.is_err() || f.idle.is_err() || f.concurrent.is_err());
        (table::render(&o, &figures, absent.as_deref()), failed)
    });
    match result {
        Ok((text, failed)) => {
            println!("{text}");
            if failed {
                eprintln!("clove-bench --vm: some figures could not be measured (FAILED in the table)");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("clove-bench --vm: {e}");
            std::process::exit(1);
        }
    }
}

/// A control-port connection once the guest listens: `connect` is retried (for up to 5 s) until
/// an EXEC is answered on it.
pub fn connect_retrying<S: Read + Write>(mut connect: impl FnMut() -> Result<S>) -> Result<S> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let attempt = connect().and_then(|mut s| exec_round_trips(&mut s, 0).map(|_| s));
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() >= end => return Err(format!("the control port: {e}").into()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// An executable named `program` is in a directory of PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Reads one frame; `Err` on EOF, a bad header, or the stream's read timeout.
pub fn read_frame(stream: &mut impl Read) -> Result<(FrameHeader, Vec<u8>)> {
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header)?;
    let header = parse_header(&header, DEFAULT_MAX_PAYLOAD).map_err(|e| format!("bad frame header: {e:?}"))?;
    let mut payload = vec![0; header.payload_len as usize];
    stream.read_exact(&mut payload)?;
    Ok((header, payload))
}

/// Waits for the guest agent's first frame and checks that it is HELLO.
pub fn expect_hello(stream: &mut impl Read) -> Result<()> {
    let (header, payload) = read_frame(stream)?;
    if header.opcode != Opcode::HELLO as u8 {
        return Err(format!("the guest's first frame has opcode {:#x}, not HELLO", header.opcode).into());
    }
    let hello: protocol::Hello = protocol::decode(&payload).map_err(|e| format!("HELLO payload: {e:?}"))?;
    if !hello.client.starts_with("clove-guest") {
        return Err(format!("HELLO from {:?}, not clove-guest", hello.client).into());
    }
    Ok(())
}

/// One EXEC of `argv` on a control-port connection; its stdout when it exits 0.
pub fn exec(stream: &mut (impl Read + Write), argv: &[&str]) -> Result<Vec<u8>> {
    let request = ExecRequest { argv: argv.iter().map(|a| a.to_string()).collect(), ..Default::default() };
    let mut frame = Vec::new();
    write_frame(&mut frame, Opcode::EXEC as u8, 0, 1, &protocol::encode(&request));
    stream.write_all(&frame)?;
    let (header, payload) = read_frame(stream)?;
    if !header.is_reply() || header.is_error() {
        return Err(format!("EXEC {argv:?}: unexpected reply {header:?}").into());
    }
    let reply: ExecReply = protocol::decode(&payload).map_err(|e| format!("EXEC reply: {e:?}"))?;
    if reply.exit_code != Some(0) {
        return Err(format!("EXEC {argv:?}: {reply:?}").into());
    }
    Ok(reply.stdout)
}

/// `n` EXEC round trips of `echo hi` on a control-port connection (after 3 unmeasured ones).
pub fn exec_round_trips(stream: &mut (impl Read + Write), n: usize) -> Result<Vec<Duration>> {
    let request = ExecRequest { argv: vec!["echo".into(), "hi".into()], ..Default::default() };
    let payload = protocol::encode(&request);
    let mut times = Vec::with_capacity(n);
    for id in 1..=(n + 3) as u32 {
        let mut frame = Vec::new();
        write_frame(&mut frame, Opcode::EXEC as u8, 0, id, &payload);
        let start = Instant::now();
        stream.write_all(&frame)?;
        let (header, payload) = read_frame(stream)?;
        let elapsed = start.elapsed();
        if header.request_id != id || !header.is_reply() || header.is_error() {
            return Err(format!("EXEC {id}: unexpected reply {header:?}").into());
        }
        let reply: ExecReply = protocol::decode(&payload).map_err(|e| format!("EXEC reply: {e:?}"))?;
        if reply.exit_code != Some(0) || reply.stdout != b"hi\n" {
            return Err(format!("EXEC {id}: {reply:?}").into());
        }
        if id > 3 {
            times.push(elapsed);
        }
    }
    Ok(times)
}

/// The median; zero for no samples.
pub fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}
