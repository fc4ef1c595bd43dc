//! `clove-run`: a thin host over Clove's runtime. `run` starts one agent and passes its exit code on,
//! `kernel` serves agents on a Unix socket, `demo` runs the main job.

mod demo;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use clove_core::policy::Level;
use clove_core::protocol::{Limits, RestartPolicy, RestartSpec, VmSpec};
use clove_core::runtime::{ListenConfig, Mount, Profile, Runtime, RuntimeConfig, SpawnSpec};

#[derive(Parser)]
#[command(name = "clove-run", version, about = "Run AI agents and untrusted code with operating-system guarantees")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one agent, stream its output and exit with its exit code.
    Run {
        /// The agent's name.
        #[arg(long, default_value = "agent")]
        name: String,
        /// Its permission level: unrestricted, standard, sandboxed, readonly, minimal.
        #[arg(long, default_value = "standard", value_parser = parse_level)]
        level: Level,
        /// Kill it after this many seconds (exit code 124).
        #[arg(long)]
        timeout: Option<f64>,
        /// KEY=VALUE to set, or KEY to pass on from this environment. Repeatable.
        #[arg(long = "env", value_name = "KEY[=VALUE]")]
        env: Vec<String>,
        /// Its working directory.
        #[arg(long)]
        cwd: Option<PathBuf>,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        isolation: IsolationArgs,
        /// Keep the state store's global keys in this database file, across runs.
        #[arg(long, value_name = "PATH")]
        state: Option<PathBuf>,
        /// Let its HTTP reach loopback, private and link-local addresses (refused by default).
        #[arg(long)]
        http_private: bool,
        /// The program and its arguments.
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// Serve agents started elsewhere on a Unix socket until interrupted.
    Kernel {
        #[arg(long, default_value = "/tmp/clove.sock")]
        socket: PathBuf,
        /// The level (and ceiling) of agents that connect.
        #[arg(long, default_value = "standard", value_parser = parse_level)]
        max_level: Level,
        /// Admit peers of other uids that present this token in HELLO.
        #[arg(long)]
        token: Option<String>,
        /// Append every audit entry (denials, lifecycle) to this file as JSON lines.
        #[arg(long)]
        audit_log: Option<PathBuf>,
        /// Keep the state store's global keys in this database file, across runs.
        #[arg(long, value_name = "PATH")]
        state: Option<PathBuf>,
        /// Let agents' HTTP reach loopback, private and link-local addresses (refused by default).
        #[arg(long)]
        http_private: bool,
    },
    /// Run the main job: several agents at different levels, and what the policy decided.
    Demo,
}

/// The process sandbox.
#[derive(clap::Args)]
struct IsolationArgs {
    /// Run it in the process sandbox (the moderate profile unless --profile says otherwise).
    #[arg(long)]
    sandbox: bool,
    /// permissive, moderate or restrictive (implies --sandbox).
    #[arg(long, value_parser = parse_profile)]
    profile: Option<Profile>,
    /// Give the sandbox the host's network (otherwise loopback only).
    #[arg(long)]
    net: bool,
    /// HOST:GUEST[:ro|:rw] to show inside the sandbox. Repeatable.
    #[arg(long = "mount", value_name = "HOST:GUEST[:ro]", value_parser = parse_mount)]
    mounts: Vec<Mount>,
    /// Run it in its own microVM instead (--memory is the VM's RAM, 256M by default).
    #[arg(long, conflicts_with_all = ["sandbox", "profile", "net", "mounts"])]
    vm: bool,
    /// The VM's vCPUs (with --vm).
    #[arg(long, default_value_t = 1, requires = "vm", value_parser = clap::value_parser!(u8).range(1..=32))]
    vcpus: u8,
    /// The guest kernel to boot (default: $CLOVE_VM_KERNEL).
    #[arg(long, value_name = "PATH", requires = "vm")]
    vm_kernel: Option<PathBuf>,
    /// The guest initramfs (default: $CLOVE_VM_INITRAMFS).
    #[arg(long, value_name = "PATH", requires = "vm")]
    vm_initramfs: Option<PathBuf>,
}

impl IsolationArgs {
    fn apply(&self, spec: &mut SpawnSpec, config: &mut RuntimeConfig) -> Result<()> {
        if self.vm {
            spec.vm = Some(VmSpec { vcpus: self.vcpus });
            config.vm.kernel = self.vm_kernel.clone().or(config.vm.kernel.take());
            config.vm.initramfs = self.vm_initramfs.clone().or(config.vm.initramfs.take());
            return Ok(());
        }
        spec.network = self.net;
        spec.mounts = self.mounts.clone();
        match (self.profile, self.sandbox || !self.mounts.is_empty() || self.net) {
            (Some(profile), _) => profile.apply(spec)?,
            (None, true) => Profile::Moderate.apply(spec)?,
            (None, false) => {}
        }
        Ok(())
    }
}

fn parse_profile(name: &str) -> Result<Profile, String> {
    Profile::from_name(name).ok_or_else(|| format!("unknown profile '{name}' (permissive, moderate, restrictive)"))
}

fn parse_mount(text: &str) -> Result<Mount, String> {
    Mount::parse(text).map_err(|e| e.to_string())
}

/// Resource limits, enforced by the agent's own cgroup.
#[derive(clap::Args)]
struct LimitArgs {
    /// Memory limit, swap included: bytes, or with K, M or G (e.g. 256M). Exceeding it OOM-kills the agent.
    #[arg(long, value_parser = parse_size)]
    memory: Option<u64>,
    /// CPU limit in CPUs (e.g. 0.5 for half of one).
    #[arg(long)]
    cpus: Option<f64>,
    /// Limit on processes and threads.
    #[arg(long)]
    pids: Option<u32>,
    /// Restart policy: never, on-failure or always, optionally with a budget: on-failure:3.
    #[arg(long, default_value = "never", value_parser = parse_restart)]
    restart: RestartSpec,
}

impl LimitArgs {
    fn limits(&self) -> Result<Limits> {
        const PERIOD_US: u64 = 100_000;
        let cpu_quota = match self.cpus {
            Some(cpus) if cpus.is_finite() && cpus > 0.0 => Some((cpus * PERIOD_US as f64).round().max(1000.0) as u64),
            Some(cpus) => bail!("--cpus {cpus}: must be a positive number of CPUs"),
            None => None,
        };
        Ok(Limits {
            memory: self.memory,
            max_pids: self.pids,
            cpu_quota,
            cpu_period: cpu_quota.map(|_| PERIOD_US),
            cpu_shares: None,
        })
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let shift = match unit.to_ascii_uppercase().trim_end_matches('B').trim_end_matches('I') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(format!("'{text}': use bytes or a K, M or G suffix")),
    };
    let n: u64 = digits.parse().map_err(|_| format!("'{text}' is not a size"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("'{text}' is too large"))
}

fn parse_restart(text: &str) -> Result<RestartSpec, String> {
    let (policy, budget) = text.split_once(':').unwrap_or((text, ""));
    let policy = match policy {
        "never" => RestartPolicy::Never,
        "on-failure" | "on_failure" => RestartPolicy::OnFailure,
        "always" => RestartPolicy::Always,
        _ => return Err(format!("'{policy}': use never, on-failure or always")),
    };
    let mut spec = RestartSpec { policy, ..RestartSpec::default() };
    if !budget.is_empty() {
        spec.max_restarts = budget.parse().map_err(|_| format!("'{budget}' is not a number of restarts"))?;
    }
    Ok(spec)
}

fn parse_level(name: &str) -> Result<Level, String> {
    Level::from_name(name)
        .ok_or_else(|| format!("unknown level '{name}' (unrestricted, standard, sandboxed, readonly, minimal)"))
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { name, level, timeout, env, cwd, limits, isolation, state, http_private, command } => {
            report(run(RunArgs { name, level, timeout, env, cwd, limits, isolation, state, http_private, command }))
        }
        Command::Kernel { socket, max_level, token, audit_log, state, http_private } => {
            let mut config = RuntimeConfig { audit_file: audit_log, state_path: state, ..RuntimeConfig::default() };
            config.net.refuse_non_public = !http_private;
            report(kernel(socket, max_level, token, config).map(|()| ExitCode::SUCCESS))
        }
        Command::Demo => report(demo::run()),
    }
}

fn report(result: Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("clove-run: {e:#}");
        ExitCode::from(125)
    })
}

fn env_pairs(items: &[String]) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => {
                std::env::var(item).map(|v| (item.clone(), v)).with_context(|| format!("--env {item}: not set here"))
            }
        })
        .collect()
}

struct RunArgs {
    name: String,
    level: Level,
    timeout: Option<f64>,
    env: Vec<String>,
    cwd: Option<PathBuf>,
    limits: LimitArgs,
    isolation: IsolationArgs,
    state: Option<PathBuf>,
    http_private: bool,
    command: Vec<String>,
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let RunArgs { name, level, timeout, env, cwd, limits, isolation, state, http_private, command } = args;
    let mut config = RuntimeConfig { state_path: state, ..RuntimeConfig::default() };
    config.net.refuse_non_public = !http_private;
    let mut spec = SpawnSpec::new(name, command);
    spec.level = level;
    spec.env = env_pairs(&env)?;
    spec.cwd = cwd;
    spec.limits = limits.limits()?;
    spec.restart = limits.restart.clone();
    isolation.apply(&mut spec, &mut config)?;
    let runtime = Runtime::start(config)?;
    let id = runtime.spawn(spec)?;
    let limit = match timeout {
        Some(secs) if secs.is_finite() && secs > 0.0 => Some(Duration::from_secs_f64(secs)),
        Some(secs) => bail!("--timeout {secs}: must be a positive number of seconds"),
        None => None,
    };
    let exit = match runtime.wait(id, limit) {
        Ok(exit) => exit,
        Err(e) if e.code() == clove_core::protocol::ErrorCode::Timeout => {
            runtime.kill(id)?;
            runtime.wait(id, None)?;
            eprintln!("clove-run: timed out after {}s", timeout.unwrap_or_default());
            return Ok(ExitCode::from(124));
        }
        Err(e) => return Err(e.into()),
    };
    // As a shell reports it: the code, or 128 plus the signal.
    let code = match (exit.code, exit.signal) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 125,
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

fn kernel(socket: PathBuf, max_level: Level, token: Option<String>, config: RuntimeConfig) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .context("installing signal handlers")?;
    let runtime = Runtime::start(config)?;
    let mut listen = ListenConfig::new(&socket);
    listen.max_level = max_level;
    listen.token = token;
    runtime.listen(listen)?;
    eprintln!("clove kernel listening on {} (agents at level {})", socket.display(), max_level.name());
    let signal = signals.forever().next();
    eprintln!("clove kernel: signal {signal:?}, stopping");
    runtime.shutdown();
    Ok(())
}
