//! Starting a sandboxed agent: its spawn spec becomes a `clove_sys::sandbox::SandboxSpec` — fresh
//! namespaces, a minimal read-only root with the program's own files, a private work directory at
//! `/work`, an unprivileged id, landlock and seccomp — and its cgroup is joined before it starts.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use clove_sys::sandbox::{Bind, LandlockRules, Namespaces, NetNamespace, Resource, Rlimit, RootFs, SandboxSpec};

use super::agents::{AgentProcess, Leader};
use super::cgroup::AgentCgroup;
use super::fs::{SandboxView, ViewBind};
use super::process::cstring;
use super::{AgentId, AgentStdio, Mount, Result, RuntimeError, SpawnSpec};

/// Host trees every sandbox sees read-only (those that exist): programs and their libraries.
const SYSTEM_TREES: &[&str] =
    &["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc/ld.so.cache", "/etc/localtime"];
/// The PATH inside a sandbox.
const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// Where the agent's private work directory appears, and its working directory.
const WORK: &str = "/work";
/// The ids the agent has inside; outside it is `nobody` when the runtime is root.
const INSIDE_ID: u32 = 1000;
const NOBODY: u32 = 65534;

/// What an EXEC on behalf of a sandboxed agent must share with it.
#[derive(Debug, Clone)]
pub(super) struct Confinement {
    pub landlock: LandlockRules,
    pub rlimits: Vec<Rlimit>,
    /// The agent's working directory inside.
    pub cwd: PathBuf,
    /// The agent's environment inside, which an EXEC starts from.
    pub env: Vec<CString>,
    /// Its filesystem, through which its READ and WRITE requests are served.
    pub view: SandboxView,
}

/// A sandbox started ahead of time: everything is in place, and a shell waits on `start` for the
/// line that execs the agent's program.
pub(super) struct Warm {
    pub process: AgentProcess,
    pub stream: UnixStream,
    pub confinement: Confinement,
    pub start: File,
}

/// The shell a warm sandbox waits in: one line on stdin, run as shell code that Clove wrote.
const SHELL_WAITER: [&str; 3] = ["/bin/sh", "-c", "IFS= read -r line && eval \"$line\""];

/// For a Python agent, an interpreter that has imported the SDK already: one JSON line on stdin
/// (`argv`, `env`, `cwd`), then the script runs in it as `__main__`. What the start would otherwise
/// pay for is done while it waits: `runpy.run_path` imports `pkgutil` on its first call, and the
/// interpreter's first `compile` sets up its parser (about 1 ms each here).
const PYTHON_WAITER: &str = r#"
import json, os, pkgutil, runpy, sys
try:
    import clove_sdk
except ImportError:
    pass
compile("pass", "<warm>", "exec")
line = sys.stdin.readline()
if not line:
    sys.exit(0)
start = json.loads(line)
os.chdir(start["cwd"])
os.environ.clear()
os.environ.update(start["env"])
null = os.open("/dev/null", os.O_RDONLY)
os.dup2(null, 0)
os.close(null)
sys.argv = start["argv"][1:]
sys.path[0] = os.path.dirname(sys.argv[0])
runpy.run_path(sys.argv[0], run_name="__main__")
"#;

/// Whether `argv` runs a Python script with the system interpreter: such an agent waits warm in
/// an interpreter rather than a shell.
fn is_python_script(argv: &[String]) -> bool {
    argv.len() >= 2 && argv[0].rsplit('/').next().is_some_and(|p| p.starts_with("python3")) && argv[1].ends_with(".py")
}

/// How a new sandbox's init, or an EXEC's helper, gets into its agent's cgroup.
pub(super) struct CgroupEntry<'a> {
    /// The files it writes itself into once released (v1 `tasks`, cgroup2 `cgroup.procs`).
    pub join: Vec<CString>,
    /// Makes the cgroup meanwhile (see `clove_sys::sandbox::spawn`).
    pub make: Box<dyn FnOnce() -> std::io::Result<()> + 'a>,
    /// A cgroup2 directory it is created in instead (`CLONE_INTO_CGROUP`), open while it starts.
    pub start_in: Option<File>,
}

impl CgroupEntry<'_> {
    /// Into an existing cgroup, or none: created in its directory on cgroup2, where a process
    /// moving itself would wait for the kernel's threadgroup lock; through its join files on v1.
    pub fn existing(cgroup: Option<&AgentCgroup>) -> Result<CgroupEntry<'static>> {
        let unified = cgroup.and_then(|c| c.unified_dir());
        let start_in =
            unified.map(File::open).transpose().map_err(|e| RuntimeError::io("opening the agent's cgroup", e))?;
        let join = if start_in.is_some() { Vec::new() } else { super::agents::join_files(cgroup) };
        Ok(CgroupEntry { join, make: Box::new(|| Ok(())), start_in })
    }

    fn start_in_fd(&self) -> Option<std::os::fd::RawFd> {
        self.start_in.as_ref().map(AsRawFd::as_raw_fd)
    }
}

/// Starts the agent in its sandbox; it finds its end of the channel at `CLOVE_FD`. Without the
/// network, it runs in `netns` when one was made ahead.
pub(super) fn start(
    id: AgentId,
    spec: &SpawnSpec,
    work: &Path,
    cgroup: CgroupEntry<'_>,
    netns: Option<&NetNamespace>,
) -> Result<(AgentProcess, UnixStream, Confinement)> {
    let (process, stream, confinement, _) = launch(Some(id), spec, work, cgroup, netns)?;
    Ok((process, stream, confinement))
}

/// Starts a sandbox shaped for `spec` whose program waits for [`hand_out`].
pub(super) fn start_warm(spec: &SpawnSpec, work: &Path, cgroup: &AgentCgroup) -> Result<Warm> {
    let (process, stream, confinement, start) = launch(None, spec, work, CgroupEntry::existing(Some(cgroup))?, None)?;
    let start = start.ok_or_else(|| RuntimeError::Sandbox("a warm sandbox has no start pipe".into()))?;
    Ok(Warm { process, stream, confinement, start })
}

/// Starts agent `id`'s program (as `spec` says) in a warm sandbox of the same shape.
pub(super) fn hand_out(warm: &mut Warm, id: AgentId, spec: &SpawnSpec) -> Result<()> {
    use std::io::Write;
    let host_cwd = host_cwd(spec);
    let argv = program_argv(&spec.argv, &host_cwd)?;
    let env = environment(Some(id), spec);
    let exports: Vec<String> = env.iter().map(|v| v.to_string_lossy().into_owned()).collect();
    let cwd = warm.confinement.cwd.display().to_string();
    let line = if is_python_script(&argv) {
        let env: serde_json::Map<String, serde_json::Value> = exports
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        format!("{}\n", serde_json::json!({ "argv": argv, "env": env, "cwd": cwd }))
    } else {
        let line = format!(
            "cd {} && export {} && exec {} </dev/null\n",
            crate::policy::join_words(&[cwd]),
            crate::policy::join_words(&exports),
            crate::policy::join_words(&argv)
        );
        if line.contains('\0') || line.trim_end().contains('\n') {
            return Err(RuntimeError::InvalidArgument("an argument or variable contains a NUL or newline".into()));
        }
        line
    };
    warm.start.write_all(line.as_bytes()).map_err(|e| RuntimeError::io("starting a warm sandbox", e))?;
    warm.confinement.env = env;
    Ok(())
}

/// The shape of the sandbox `spec` needs, which decides whether a warm one fits: what it shows, its
/// network, its stdio and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Shape {
    binds: Vec<(PathBuf, PathBuf, bool)>,
    network: bool,
    stdio: AgentStdio,
    limits: crate::protocol::Limits,
    /// The interpreter a Python agent waits in, or none (a shell).
    python: Option<String>,
}

pub(super) fn shape(spec: &SpawnSpec) -> Result<Shape> {
    let host_cwd = host_cwd(spec);
    let argv = program_argv(&spec.argv, &host_cwd)?;
    let binds = binds(&argv, &spec.env, Path::new("/nonexistent-work"), &spec.mounts);
    Ok(Shape {
        binds: binds.into_iter().map(|b| (b.source, b.target, b.writable)).collect(),
        network: spec.network,
        stdio: spec.stdio.clone(),
        limits: spec.limits.clone(),
        python: is_python_script(&argv).then(|| argv[0].clone()),
    })
}

/// Starts a sandbox for `spec`: its program now (agent `id`), or, without an id, the waiting shell
/// whose start pipe is returned.
fn launch(
    id: Option<AgentId>,
    spec: &SpawnSpec,
    work: &Path,
    cgroup: CgroupEntry<'_>,
    netns: Option<&NetNamespace>,
) -> Result<(AgentProcess, UnixStream, Confinement, Option<File>)> {
    let (ours, theirs) = UnixStream::pair().map_err(|e| RuntimeError::io("creating the agent channel", e))?;
    ours.set_nonblocking(true).map_err(|e| RuntimeError::io("configuring the agent channel", e))?;
    let (host_uid, host_gid) = match clove_sys::current_uid() {
        0 => (NOBODY, NOBODY),
        uid => (uid, clove_sys::current_gid()),
    };
    prepare_work_dir(work, host_uid, host_gid)?;
    let (mut stdin, out, err) = super::process::open_stdio(&spec.stdio)?;
    let mut start = None;
    if id.is_none() {
        let (read, write) = std::io::pipe().map_err(|e| RuntimeError::io("creating a start pipe", e))?;
        stdin = File::from(std::os::fd::OwnedFd::from(read));
        start = Some(File::from(std::os::fd::OwnedFd::from(write)));
    }
    let host_cwd = host_cwd(spec);
    let argv = program_argv(&spec.argv, &host_cwd)?;
    // Inside, the agent works in /work, or in its host working directory when a mount shows it.
    let cwd = spec.mounts.iter().find(|m| m.guest == host_cwd).map_or_else(|| PathBuf::from(WORK), |m| m.guest.clone());
    let binds = binds(&argv, &spec.env, work, &spec.mounts);
    let env = environment(id, spec);
    let program: Vec<String> = match id {
        Some(_) => argv.clone(),
        None if is_python_script(&argv) => vec![argv[0].clone(), "-c".into(), PYTHON_WAITER.into()],
        None => SHELL_WAITER.iter().map(|s| s.to_string()).collect(),
    };
    let landlock = LandlockRules {
        read_exec: binds.iter().filter(|b| !b.writable).map(|b| b.target.clone()).collect(),
        read_write: binds.iter().filter(|b| b.writable).map(|b| b.target.clone()).collect(),
    };
    let rlimits = vec![
        Rlimit { resource: Resource::Core, soft: 0, hard: 0 },
        Rlimit { resource: Resource::OpenFiles, soft: 1024, hard: 4096 },
    ];
    let sandbox = SandboxSpec {
        env: env.clone(),
        argv: program.iter().map(|a| cstring(a.as_bytes())).collect::<Result<_>>()?,
        namespaces: Namespaces { pid: true, net: !spec.network, uts: true, ipc: true, cgroup: true },
        uid: INSIDE_ID,
        gid: INSIDE_ID,
        host_uid,
        host_gid,
        hostname: cstring(format!("clove-{}", sanitize(&spec.name)).as_bytes())?,
        landlock: Some(landlock.clone()),
        root: RootFs { binds, tmp_size: 64 << 20, shm_size: 16 << 20, dev_pts: false },
        cwd: cstring(cwd.as_os_str().as_encoded_bytes())?,
        rlimits: rlimits.clone(),
        seccomp: true,
        stdin: stdin.as_raw_fd(),
        stdout: out.as_raw_fd(),
        stderr: err.as_raw_fd(),
        channel: Some(theirs.as_raw_fd()),
        start_in_cgroup: cgroup.start_in_fd(),
        join_cgroups: cgroup.join,
        network_namespace: netns.map(|ns| ns.as_fd().as_raw_fd()),
    };
    let sandboxed = clove_sys::sandbox::spawn(&sandbox, cgroup.make)
        .map_err(|e| RuntimeError::Sandbox(format!("starting {}: {e}", spec.argv[0])))?;
    let process = AgentProcess { pid: sandboxed.pid, pidfd: sandboxed.pidfd, leader: Leader::PidNamespace };
    let view = SandboxView {
        binds: sandbox
            .root
            .binds
            .iter()
            .map(|b| ViewBind { inside: b.target.clone(), host: b.source.clone(), writable: b.writable })
            .collect(),
        cwd: cwd.clone(),
        owner: (host_uid, host_gid),
    };
    Ok((process, ours, Confinement { landlock, rlimits, cwd, env, view }, start))
}

/// The host directory relative paths on the command line are taken from.
fn host_cwd(spec: &SpawnSpec) -> PathBuf {
    spec.cwd.clone().or_else(|| std::env::current_dir().ok()).unwrap_or_else(|| PathBuf::from("/"))
}

/// The work directory, owned by the id the agent has outside so it can write there.
fn prepare_work_dir(work: &Path, uid: u32, gid: u32) -> Result<()> {
    std::fs::create_dir_all(work).map_err(|e| RuntimeError::io(format!("creating {}", work.display()), e))?;
    std::os::unix::fs::chown(work, Some(uid), Some(gid))
        .map_err(|e| RuntimeError::io(format!("handing {} to the agent", work.display()), e))
}

/// Starts an EXEC inside a sandboxed agent: its namespaces, root, ids, landlock, seccomp, rlimits
/// and cgroup (created there on cgroup2, joined on v1), in its working directory (`cwd`, relative
/// to it, when given).
pub(super) fn enter(
    init: &std::os::fd::OwnedFd,
    confinement: &Confinement,
    argv: &[String],
    cwd: Option<&str>,
    env: &[(String, String)],
    stdio: [std::os::fd::RawFd; 3],
    cgroup: Option<&AgentCgroup>,
) -> Result<AgentProcess> {
    let entry = CgroupEntry::existing(cgroup)?;
    let argv = program_argv(argv, Path::new("/nonexistent"))?;
    let cwd = cwd.map_or_else(|| confinement.cwd.clone(), |c| confinement.cwd.join(c));
    let mut full_env = confinement.env.clone();
    full_env.extend(env.iter().filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok()));
    let spec = clove_sys::sandbox::EnterSpec {
        argv: argv.iter().map(|a| cstring(a.as_bytes())).collect::<Result<_>>()?,
        env: full_env,
        uid: INSIDE_ID,
        gid: INSIDE_ID,
        cwd: cstring(cwd.as_os_str().as_encoded_bytes())?,
        rlimits: confinement.rlimits.clone(),
        seccomp: true,
        landlock: Some(confinement.landlock.clone()),
        stdin: stdio[0],
        stdout: stdio[1],
        stderr: stdio[2],
        start_in_cgroup: entry.start_in_fd(),
        join_cgroups: entry.join,
    };
    let entered = clove_sys::sandbox::enter(init, &spec)
        .map_err(|e| RuntimeError::Sandbox(format!("starting {} inside the agent's sandbox: {e}", argv[0])))?;
    Ok(AgentProcess { pid: entered.pid, pidfd: entered.pidfd, leader: Leader::PidNamespace })
}

/// argv with the program as an absolute path, found on the sandbox's PATH (the system trees it
/// sees), not the host's: a program from elsewhere may depend on files the sandbox does not have.
/// Arguments naming existing files (`agent.py`, `/srv/../agents/a.py`) become canonical absolute
/// paths, so the files can be shown inside where the command line says.
fn program_argv(argv: &[String], host_cwd: &Path) -> Result<Vec<String>> {
    let program = argv.first().ok_or_else(|| RuntimeError::InvalidArgument("empty argv".into()))?;
    let found = if program.contains('/') {
        Some(PathBuf::from(program))
    } else {
        SANDBOX_PATH.split(':').map(|dir| Path::new(dir).join(program)).find(|p| p.is_file())
    };
    let found = found.filter(|p| p.is_absolute() && p.is_file()).ok_or_else(|| {
        RuntimeError::io(format!("starting {program}"), std::io::Error::from(std::io::ErrorKind::NotFound))
    })?;
    let mut out = vec![found.display().to_string()];
    out.extend(argv[1..].iter().map(|arg| {
        // As the kernel resolves it: the sandbox shows the file's directory, not the path's `..` or links.
        let named = (!arg.starts_with('-')).then(|| host_cwd.join(arg)).filter(|p| p.is_file());
        match named.and_then(|p| std::fs::canonicalize(p).ok()) {
            Some(file) => file.display().to_string(),
            None => arg.clone(),
        }
    }));
    Ok(out)
}

/// The trees the agent sees: the system's, read-only; the directories of the files its command
/// line names and of its PYTHONPATH, read-only; its work directory, writable.
fn binds(argv: &[String], env: &[(String, String)], work: &Path, mounts: &[Mount]) -> Vec<Bind> {
    let mut read_only: Vec<PathBuf> = SYSTEM_TREES.iter().map(PathBuf::from).filter(|p| p.exists()).collect();
    let named = argv
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_file())
        .filter_map(|p| p.parent().map(Path::to_path_buf));
    let python_path = env
        .iter()
        .filter(|(k, _)| k == "PYTHONPATH")
        .flat_map(|(_, v)| v.split(':').map(PathBuf::from).collect::<Vec<_>>());
    // Bound as the kernel resolves them, so no `..` or symlink is needed inside.
    let dirs = named.chain(python_path).filter(|d| d.is_absolute()).filter_map(|d| std::fs::canonicalize(d).ok());
    for dir in dirs.filter(|d| d.is_dir()) {
        if !read_only.iter().any(|seen| dir.starts_with(seen)) {
            read_only.push(dir);
        }
    }
    let mut binds: Vec<Bind> = read_only.into_iter().map(Bind::read_only).collect();
    binds.push(Bind::writable(work, WORK));
    for mount in mounts {
        let bind = Bind { source: mount.host.clone(), target: mount.guest.clone(), writable: !mount.read_only };
        binds.push(bind);
    }
    // Parents before children, so a tree under /work (the host may keep files there) stays visible
    // on top of the agent's own /work rather than hidden beneath it.
    binds.sort_by_key(|b| b.target.components().count());
    binds
}

/// The minimal environment, inside the sandbox's own view, plus the spec's variables.
/// Without an id (a warm sandbox's shell), no CLOVE_AGENT_ID: the start line sets it.
fn environment(id: Option<AgentId>, spec: &SpawnSpec) -> Vec<CString> {
    let base = [
        ("PATH", SANDBOX_PATH.to_string()),
        ("HOME", WORK.to_string()),
        ("LANG", "C.UTF-8".to_string()),
        ("CLOVE_FD", clove_sys::process::CHANNEL_FD.to_string()),
        ("CLOVE_AGENT_ID", id.map(|id| id.to_string()).unwrap_or_default()),
    ];
    let extra = spec.env.iter().map(|(k, v)| match k.as_str() {
        "PYTHONPATH" => (k.as_str(), canonical_path_list(v)),
        _ => (k.as_str(), v.clone()),
    });
    base.into_iter().chain(extra).filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok()).collect()
}

/// A `:`-separated list of directories, each as the kernel resolves it (as they are bound).
fn canonical_path_list(list: &str) -> String {
    let dirs =
        list.split(':').map(|d| std::fs::canonicalize(d).map_or_else(|_| d.to_string(), |p| p.display().to_string()));
    dirs.collect::<Vec<_>>().join(":")
}

/// A hostname from an agent name: letters, digits and dashes, at most 50 of them.
fn sanitize(name: &str) -> String {
    let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(50).collect();
    if clean.is_empty() {
        "agent".into()
    } else {
        clean
    }
}
