//! `clove-bench --spawn`: how long it takes to start a process, from asking for it to having reaped
//! it, for a plain fork+exec, Clove's plain and sandboxed spawns, bubblewrap and unshare(1), and a
//! Python agent started directly and as a Clove agent that has its first request answered.
//!
//! Every case runs once per round, in a new random order each round, so all of them see the same
//! machine noise; `warmup` rounds are thrown away, then `runs` rounds are measured. Nothing fails on a slow figure:
//! a target that is missed is printed, not enforced. A case that cannot run here (no bwrap, not
//! root) is printed as SKIPPED; one that fails is printed as FAILED with its error.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clove_core::runtime::{AgentId, AgentStdio, EventKind, Runtime, RuntimeConfig, SpawnSpec};

use crate::Result;

/// Targets (issue 4, "Benchmark"): the full sandbox at most 0.8× bwrap's p50; a Python agent
/// (without a pool) at most 1 ms slower than starting the interpreter and importing the SDK directly;
/// a warm sandbox handed out in at most 0.5 ms; a Python agent from a warm interpreter answered
/// within 3 ms.
const SANDBOX_MAX_RATIO: f64 = 0.8;
const PYTHON_MAX_EXTRA: Duration = Duration::from_millis(1);
const HAND_OUT_MAX: Duration = Duration::from_micros(500);
const PYTHON_WARM_MAX: Duration = Duration::from_millis(3);

/// The system interpreter: a sandbox finds programs on its own PATH, not on the host's.
const PYTHON: &str = "/usr/bin/python3";
/// What every agent pays: the interpreter's start and the SDK's import. Every Python row leaves
/// with `os._exit`, so what is measured ends at its last step, not at the interpreter's teardown.
const PYTHON_FLOOR: &str = "import os, clove_sdk; os._exit(0)";
/// The agent: adopt the channel at CLOVE_FD, have one NOOP answered, say so with an event, exit. A
/// Clove row's time ends when the host gets the event: its first requests were answered then
/// (the sandbox's teardown after the exit is not part of it).
const PYTHON_AGENT: &str = "import os; from clove_sdk import CloveClient; c = CloveClient(); c.connect(); \
                            c.noop('x'); c.emit_event('bench_ready'); os._exit(0)";
/// The custom event a Python agent emits once its NOOP is answered.
const READY_EVENT: &str = "bench_ready";

/// The least time between the end of one start that joins a cgroup and the next. A parent moving a
/// child into a cgroup takes the kernel's cgroup_threadgroup_rwsem for writing, which waits for an
/// RCU grace period (~5-15 ms here) unless another move happened within about one grace period.
/// Clove's processes move themselves (a thread through v1 `tasks` takes no such lock), but the pause
/// keeps every row an isolated start whatever its way in, as a lone spawn is.
const CGROUP_SETTLE: Duration = Duration::from_millis(50);

/// How long any start waits after one from a warm pool: the pool's refill (20 ms later, then a
/// sandbox and, for Python, an interpreter to build: ~60 ms here) would otherwise run during it and
/// be charged to whichever row comes next.
const REFILL_SETTLE: Duration = Duration::from_millis(150);

const BWRAP: [&str; 9] = ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"];
const UNSHARE: [&str; 3] = ["unshare", "-Urmpfnui", "--mount-proc"];

const USAGE: &str = "usage: clove-bench --spawn [--runs N] [--warmup N] [--only TEXT]

  --runs N     measured rounds; every case runs once per round (default 100)
  --warmup N   rounds run first and not measured (default 5)
  --only TEXT  run only the rows whose name contains TEXT, and the anchors (bwrap, Python direct)";

pub struct Options {
    pub runs: usize,
    pub warmup: usize,
    pub only: Option<String>,
}

pub fn parse_args(args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options { runs: 100, warmup: 5, only: None };
    for (flag, value) in crate::flag_values(args.filter(|a| a != "--spawn"), USAGE)? {
        let number = || value.parse::<usize>().map_err(|e| format!("{flag} {value}: {e}"));
        match flag.as_str() {
            "--runs" => options.runs = number()?.max(1),
            "--warmup" => options.warmup = number()?,
            "--only" => options.only = Some(value.clone()),
            _ => return Err(format!("unknown option {flag}\n{USAGE}").into()),
        }
    }
    Ok(options)
}

/// Which rows a case is compared with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    /// `/bin/true` started some way: compared with bwrap.
    True,
    /// The Python agent: compared with the interpreter started directly.
    Python,
}

/// The target a row is held to, if any.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    None,
    /// p50 at most 0.8× bwrap's.
    Sandbox,
    /// p50 at most the direct start's + 1 ms.
    Python,
    /// p50 at most 0.5 ms.
    HandOut,
    /// p50 at most 3 ms.
    PythonWarm,
}

/// Which row the others are compared with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Anchor {
    None,
    Bwrap,
    PythonFloor,
}

/// How one start is made.
enum How {
    /// `std::process::Command` spawn + wait, with `PYTHONPATH` when given.
    Command { argv: Vec<String>, python_path: Option<String> },
    /// `Runtime::spawn` + `Runtime::wait`.
    Clove { argv: Vec<String>, python_path: Option<String>, setup: Setup },
    /// `Runtime::spawn` alone, of a warm sandbox: the hand-out (the agent is then waited for).
    HandOut { argv: Vec<String> },
}

/// How a Clove agent is started.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// `SpawnSpec::new`: a child process, no cgroup.
    Plain,
    /// Plain, but with a limit set (`max_pids`), so the agent gets its own cgroup: what joining a
    /// cgroup alone costs.
    PlainCgroup,
    /// `sandboxed = true`: namespaces, minimal root, landlock, seccomp, its own cgroup.
    Sandboxed,
    /// Sandboxed with `network = true`: the same without a network namespace.
    SandboxedHostNet,
    /// Sandboxed, from sandboxes of its shape made ahead of time (`Runtime::prewarm`).
    SandboxedWarm,
}

struct Case {
    name: String,
    group: Group,
    anchor: Anchor,
    target: Target,
    how: How,
    /// Why it cannot run here; it is not run and its row says so.
    skipped: Option<String>,
    /// The first error it met; it is not run again and its row says so.
    failed: Option<String>,
    times: Vec<Duration>,
}

impl Case {
    fn new(name: &str, group: Group, how: How) -> Case {
        Case {
            name: name.into(),
            group,
            anchor: Anchor::None,
            target: Target::None,
            how,
            skipped: None,
            failed: None,
            times: Vec::new(),
        }
    }

    fn anchor(mut self, anchor: Anchor) -> Case {
        self.anchor = anchor;
        self
    }

    fn target(mut self, target: Target) -> Case {
        self.target = target;
        self
    }

    fn skip_unless(mut self, reason: Option<String>) -> Case {
        self.skipped = reason;
        self
    }

    /// The agent is put into a cgroup of its own before it starts (a warm one was put there ahead).
    fn joins_cgroup(&self) -> bool {
        matches!(self.how, How::Clove { setup, .. } if setup != Setup::Plain && setup != Setup::SandboxedWarm)
    }

    /// The agent takes a sandbox from a warm pool, which is then refilled.
    fn takes_warm(&self) -> bool {
        matches!(self.how, How::Clove { setup: Setup::SandboxedWarm, .. } | How::HandOut { .. })
    }

    fn active(&self) -> bool {
        self.skipped.is_none() && self.failed.is_none()
    }
}

/// What `render` prints: the cases with their samples, and the settings of the run.
pub struct Results {
    cases: Vec<Case>,
    runs: usize,
    warmup: usize,
    wall: Duration,
}

pub fn run(options: &Options) -> Result<Results> {
    let started = Instant::now();
    let scratch = ScratchDir::new()?;
    let python_path = python_path(&scratch.0)?;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let not_root = (!root).then(|| "needs root (the sandbox gets its own cgroup)".to_string());
    let missing = |program: &str| {
        (!on_path(program)).then(|| format!("`{program}` not found (run.sh installs it: apt-get install bubblewrap)"))
    };
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let with_true = |w: &[&str]| {
        let mut argv = words(w);
        argv.push("true".into());
        argv
    };
    let python = |code: &str| words(&[PYTHON, "-c", code]);
    let pp = Some(python_path.clone());
    // The same agent as a script file: a warm Python sandbox waits in an interpreter for a script.
    let agent_script = scratch.0.join("agent.py");
    std::fs::write(&agent_script, PYTHON_AGENT.replace("; ", "\n"))?;
    let agent_script = agent_script.display().to_string();

    let mut cases = vec![
        Case::new(
            "fork+exec `/bin/true` (Command)",
            Group::True,
            How::Command { argv: words(&["/bin/true"]), python_path: None },
        ),
        Case::new(
            "Clove plain spawn, `/bin/true`",
            Group::True,
            How::Clove { argv: words(&["/bin/true"]), python_path: None, setup: Setup::Plain },
        ),
        Case::new(
            "Clove sandboxed spawn, `/bin/true`",
            Group::True,
            How::Clove { argv: words(&["/bin/true"]), python_path: None, setup: Setup::Sandboxed },
        )
        .target(Target::Sandbox)
        .skip_unless(not_root.clone()),
        Case::new(
            "`bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev true`",
            Group::True,
            How::Command { argv: with_true(&BWRAP), python_path: None },
        )
        .anchor(Anchor::Bwrap)
        .skip_unless(missing("bwrap")),
        Case::new(
            "`unshare -Urmpfnui --mount-proc true`",
            Group::True,
            How::Command { argv: with_true(&UNSHARE), python_path: None },
        )
        .skip_unless(missing("unshare")),
        Case::new(
            "Python direct: `python3 -c \"import clove_sdk\"` (floor)",
            Group::Python,
            How::Command { argv: python(PYTHON_FLOOR), python_path: pp.clone() },
        )
        .anchor(Anchor::PythonFloor),
        Case::new(
            "Python agent, Clove plain, first NOOP answered",
            Group::Python,
            How::Clove { argv: python(PYTHON_AGENT), python_path: pp.clone(), setup: Setup::Plain },
        )
        .target(Target::Python),
        Case::new(
            "Python agent, Clove sandboxed, first NOOP answered",
            Group::Python,
            How::Clove { argv: python(PYTHON_AGENT), python_path: pp.clone(), setup: Setup::Sandboxed },
        )
        .target(Target::Python)
        .skip_unless(not_root.clone()),
        // Where the sandbox's time goes: one layer at a time, informational.
        Case::new(
            "layers: Clove plain spawn + own cgroup (a limit set), `/bin/true`",
            Group::True,
            How::Clove { argv: words(&["/bin/true"]), python_path: None, setup: Setup::PlainCgroup },
        )
        .skip_unless(not_root.clone()),
        Case::new(
            "layers: Clove sandboxed, host network (no net namespace), `/bin/true`",
            Group::True,
            How::Clove { argv: words(&["/bin/true"]), python_path: None, setup: Setup::SandboxedHostNet },
        )
        .skip_unless(not_root.clone()),
        Case::new(
            "Clove sandboxed spawn from a warm pool, `/bin/true`",
            Group::True,
            How::Clove { argv: words(&["/bin/true"]), python_path: None, setup: Setup::SandboxedWarm },
        )
        .skip_unless(not_root.clone()),
        Case::new(
            "warm pool hand-out alone (`Runtime::spawn` returns)",
            Group::True,
            How::HandOut { argv: words(&["/bin/true"]) },
        )
        .target(Target::HandOut)
        .skip_unless(not_root.clone()),
        Case::new(
            "Python agent, Clove sandboxed from a warm interpreter (SDK imported), first NOOP answered",
            Group::Python,
            How::Clove {
                argv: vec![PYTHON.into(), agent_script],
                python_path: pp.clone(),
                setup: Setup::SandboxedWarm,
            },
        )
        .target(Target::PythonWarm)
        .skip_unless(not_root),
    ];
    if let Some(only) = &options.only {
        // The anchors stay, for the ratios.
        cases.retain(|c| c.name.contains(only.as_str()) || c.anchor != Anchor::None);
    }

    let runtime = Runtime::start(RuntimeConfig::default())?;
    runtime.subscribe(&[READY_EVENT])?;
    // One pool per warm shape (the hand-out row's is the `/bin/true` one, shared when both run).
    for case in cases.iter().filter(|c| c.active() && c.takes_warm()) {
        runtime.prewarm(clove_spec(&case.how, 0, AgentStdio::Null), 3)?;
    }
    let mut serial = 0u64;
    let mut last_join: Option<Instant> = None;
    let mut last_warm: Option<Instant> = None;
    let mut order: Vec<usize> = (0..cases.len()).collect();
    let mut random = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..options.warmup + options.runs {
        let measured = round >= options.warmup;
        // A new order each round: a start slows the one after it (a namespace's teardown runs in a
        // kernel worker afterwards), so no row may always follow the same one.
        for i in (1..order.len()).rev() {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            order.swap(i, (random % (i as u64 + 1)) as usize);
        }
        for &index in &order {
            let case = &mut cases[index];
            if !case.active() {
                continue;
            }
            serial += 1;
            if case.joins_cgroup() {
                // Each start joins its cgroup as an isolated agent start would (see CGROUP_SETTLE).
                if let Some(wait) = last_join.and_then(|t| CGROUP_SETTLE.checked_sub(t.elapsed())) {
                    std::thread::sleep(wait);
                }
            }
            if let Some(wait) = last_warm.and_then(|t| REFILL_SETTLE.checked_sub(t.elapsed())) {
                std::thread::sleep(wait);
            }
            let outcome = start_once(&runtime, &case.how, case.group, serial);
            if case.joins_cgroup() {
                last_join = Some(Instant::now());
            }
            if case.takes_warm() {
                last_warm = Some(Instant::now());
            }
            match outcome {
                Ok(took) if measured => case.times.push(took),
                Ok(_) => {}
                Err(e) => case.failed = Some(explain(&runtime, &case.how, &scratch.0, serial, e)),
            }
        }
    }
    drop(runtime);
    Ok(Results { cases, runs: options.runs, warmup: options.warmup, wall: started.elapsed() })
}

/// Starts the case once and waits for it to end; the time from before the start to after the reap.
fn start_once(runtime: &Runtime, how: &How, group: Group, serial: u64) -> Result<Duration> {
    match how {
        How::Command { argv, python_path } => {
            let mut command = Command::new(&argv[0]);
            command.args(&argv[1..]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            if let Some(path) = python_path {
                // The environment a Clove agent gets (PATH, HOME, LANG), so only the start differs.
                command.env_clear().env("PYTHONPATH", path).env("LANG", "C.UTF-8");
                for key in ["PATH", "HOME"] {
                    if let Some(value) = std::env::var_os(key) {
                        command.env(key, value);
                    }
                }
            }
            let begin = Instant::now();
            let status = command.status()?;
            let took = begin.elapsed();
            if !status.success() {
                return Err(format!("{} exited with {status}", argv[0]).into());
            }
            Ok(took)
        }
        How::Clove { .. } | How::HandOut { .. } => {
            let spec = clove_spec(how, serial, AgentStdio::Null);
            let begin = Instant::now();
            let id = runtime.spawn(spec)?;
            let handed = begin.elapsed();
            let ready = (group == Group::Python).then(|| ready_event(runtime, id)).transpose()?;
            let answered = begin.elapsed();
            let exit = runtime.wait(id, Some(Duration::from_secs(30)))?;
            let took = begin.elapsed();
            if exit.code != Some(0) {
                return Err(format!("agent ended with {exit:?}").into());
            }
            Ok(match how {
                How::HandOut { .. } => handed,
                _ if ready.is_some() => answered,
                _ => took,
            })
        }
    }
}

/// Waits for agent `id`'s ready event (the runtime's other events are skipped).
fn ready_event(runtime: &Runtime, id: AgentId) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(event) = runtime.next_event(Some(left)) else { break };
        if let EventKind::Bus(bus) = &event.kind {
            if event.agent_id == id && bus.custom_type.as_deref() == Some(READY_EVENT) {
                return Ok(());
            }
        }
    }
    Err(format!("agent {id} never said it was ready").into())
}

fn clove_spec(how: &How, serial: u64, stdio: AgentStdio) -> SpawnSpec {
    let (argv, python_path, setup) = match how {
        How::Clove { argv, python_path, setup } => (argv, python_path, setup),
        How::HandOut { argv } => (argv, &None, &Setup::SandboxedWarm),
        How::Command { .. } => unreachable!("not a Clove case"),
    };
    let mut spec = SpawnSpec::new(format!("bench-{serial}"), argv.clone());
    spec.stdio = stdio;
    match setup {
        Setup::Plain => {}
        Setup::PlainCgroup => spec.limits.max_pids = Some(4096),
        Setup::Sandboxed => spec.sandboxed = true,
        Setup::SandboxedHostNet => {
            spec.sandboxed = true;
            spec.network = true;
        }
        Setup::SandboxedWarm => {
            // A shape of its own (stdio inherited), so the cold sandboxed rows never take a warm one.
            spec.sandboxed = true;
            spec.stdio = AgentStdio::Inherit;
        }
    }
    if let Some(path) = python_path {
        spec.env.push(("PYTHONPATH".into(), path.clone()));
    }
    spec
}

/// The error, and for a Clove agent that ran but failed, the last lines it wrote, from one more run
/// with its output kept.
fn explain(
    runtime: &Runtime,
    how: &How,
    scratch: &Path,
    serial: u64,
    error: Box<dyn std::error::Error + Send + Sync>,
) -> String {
    let mut text = error.to_string();
    if !matches!(how, How::Command { .. }) && text.starts_with("agent ended") {
        let log = scratch.join(format!("agent-{serial}.log"));
        let spec = clove_spec(how, serial, AgentStdio::File(log.clone()));
        if let Ok(id) = runtime.spawn(spec) {
            let _ = runtime.wait(id, Some(Duration::from_secs(30)));
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = output.lines().rev().take(3).collect();
            if !tail.is_empty() {
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                let _ = write!(text, "; its output ends: {}", tail.join(" / "));
            }
        }
    }
    text
}

/// A scratch directory, removed when dropped. It is made in `/var/tmp` when that exists: a
/// sandbox has its own `/tmp` and `/work`, and a bind from below either is hidden by them.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<ScratchDir> {
        let base = Path::new("/var/tmp");
        let base = if base.is_dir() { base.to_path_buf() } else { std::env::temp_dir() };
        let dir = base.join(format!("clove-bench-spawn-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A copy of this checkout's `bindings/python/clove_sdk` in `scratch`, compiled, for PYTHONPATH:
/// every Python row imports the same files, and a sandbox can see them (see [`ScratchDir`]).
fn python_path(scratch: &Path) -> Result<String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bindings/python/clove_sdk");
    let target = scratch.join("python/clove_sdk");
    std::fs::create_dir_all(&target)?;
    let sources = std::fs::read_dir(&source).map_err(|e| format!("the Python SDK at {}: {e}", source.display()))?;
    for entry in sources {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "py") {
            if let Some(name) = path.file_name() {
                std::fs::copy(&path, target.join(name))?;
            }
        }
    }
    let python_path = scratch.join("python").display().to_string();
    // Compiled once here, so no row pays for it (inside a sandbox the tree is read-only).
    let status = Command::new(PYTHON)
        .args(["-c", PYTHON_FLOOR])
        .env("PYTHONPATH", &python_path)
        .env_remove("PYTHONDONTWRITEBYTECODE")
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("{PYTHON}: {e}"))?;
    if !status.success() {
        return Err(format!("{PYTHON} -c '{PYTHON_FLOOR}' with PYTHONPATH={python_path}: {status}").into());
    }
    Ok(python_path)
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let last = sorted.len().saturating_sub(1);
    sorted.get(((last as f64) * q).round() as usize).copied().unwrap_or_default()
}

#[derive(Clone, Copy)]
struct Summary {
    p50: Duration,
    p95: Duration,
}

fn summary(case: &Case) -> Option<Summary> {
    if !case.active() || case.times.is_empty() {
        return None;
    }
    let mut sorted = case.times.clone();
    sorted.sort_unstable();
    Some(Summary { p50: percentile(&sorted, 0.50), p95: percentile(&sorted, 0.95) })
}

pub fn render(r: &Results) -> String {
    let find = |anchor: Anchor| r.cases.iter().find(|c| c.anchor == anchor).and_then(summary);
    let bwrap = find(Anchor::Bwrap);
    let floor = find(Anchor::PythonFloor);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Spawn latency, start to reaped; a Python agent's to its first requests answered ({} runs each \
         after {} warm-up rounds, interleaved; {:.1} s)\n",
        r.runs,
        r.warmup,
        r.wall.as_secs_f64()
    );
    let _ = writeln!(out, "| what | p50 | p95 | ratio to bwrap p50 | vs Python direct p50 | target |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for case in &r.cases {
        let Some(s) = summary(case) else {
            let why = match (&case.skipped, &case.failed) {
                (Some(reason), _) => format!("**SKIPPED**: {reason}"),
                (_, Some(error)) => format!("**FAILED**: {}", error.replace('|', "\\|")),
                _ => "**no samples**".into(),
            };
            let _ = writeln!(out, "| {} | {why} | | | | {} |", case.name, target_text(case.target, None));
            continue;
        };
        let to_bwrap = bwrap.map_or("—".into(), |b| format!("{:.2}×", ratio(s.p50, b.p50)));
        let to_floor = match (case.group, floor) {
            (Group::Python, Some(f)) => {
                let extra = s.p50.as_secs_f64() - f.p50.as_secs_f64();
                format!("{:.2}× ({:+.2} ms)", ratio(s.p50, f.p50), extra * 1e3)
            }
            _ => "—".into(),
        };
        let met = match case.target {
            Target::None => None,
            Target::Sandbox => bwrap.map(|b| ratio(s.p50, b.p50) <= SANDBOX_MAX_RATIO),
            Target::Python => floor.map(|f| s.p50 <= f.p50 + PYTHON_MAX_EXTRA),
            Target::HandOut => Some(s.p50 <= HAND_OUT_MAX),
            Target::PythonWarm => Some(s.p50 <= PYTHON_WARM_MAX),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {to_bwrap} | {to_floor} | {} |",
            case.name,
            millis(s.p50),
            millis(s.p95),
            target_text(case.target, met)
        );
    }
    let skipped: Vec<&Case> = r.cases.iter().filter(|c| !c.active()).collect();
    if !skipped.is_empty() {
        let _ = writeln!(out, "\n**{} of {} rows were not measured (see above).**", skipped.len(), r.cases.len());
    }
    out
}

fn target_text(target: Target, met: Option<bool>) -> String {
    let text = match target {
        Target::None => return "—".into(),
        Target::Sandbox => format!("p50 ≤ {SANDBOX_MAX_RATIO}× bwrap"),
        Target::Python => format!("p50 ≤ direct + {} ms", PYTHON_MAX_EXTRA.as_millis()),
        Target::HandOut => format!("p50 ≤ {} ms", HAND_OUT_MAX.as_secs_f64() * 1e3),
        Target::PythonWarm => format!("p50 ≤ {} ms", PYTHON_WARM_MAX.as_millis()),
    };
    match met {
        Some(true) => format!("{text} (met)"),
        Some(false) => format!("{text} (**missed**)"),
        None => format!("{text} (not measured)"),
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
