//! The microVM tier: an agent whose boundary is its own guest kernel, booted by clove-vmm inside
//! this process. What the host must have for it, and where the guest's kernel and initramfs are.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clove_vmm::devices::vsock::Vsock;
use clove_vmm::initramfs::CpioWriter;
use clove_vmm::{MicroVm, VmConfig, VmExit};

use super::cgroup::AgentCgroup;
use super::{AgentId, AgentStdio, Result, RuntimeError, SpawnSpec};
use crate::protocol::{ExitInfo, Limits, VmSpec};

/// The guest's kernel and initramfs (`guest/kernel/build.sh` and `guest/initramfs.sh` build them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmImage {
    pub kernel: Option<PathBuf>,
    pub initramfs: Option<PathBuf>,
    /// Keep each guest's console and write it to this file when its VM ends (each VM replaces
    /// the last one's): for debugging a guest. The console costs boot time, so it is off by default.
    pub console_log: Option<PathBuf>,
}

impl VmImage {
    /// From `CLOVE_VM_KERNEL` and `CLOVE_VM_INITRAMFS`.
    pub fn from_env() -> VmImage {
        VmImage {
            kernel: std::env::var_os("CLOVE_VM_KERNEL").map(PathBuf::from),
            initramfs: std::env::var_os("CLOVE_VM_INITRAMFS").map(PathBuf::from),
            console_log: std::env::var_os("CLOVE_VM_CONSOLE_LOG").map(PathBuf::from),
        }
    }
}

/// Why this host cannot start a microVM agent.
#[derive(Debug, thiserror::Error)]
pub enum VmTierError {
    #[error("the microVM tier needs /dev/kvm: {0}")]
    NoKvm(std::io::Error),
    #[error(
        "this host's /dev/kvm is kvm_pvm, a software nested hypervisor on which a Linux guest cannot \
         boot; run VM agents on a host with hardware KVM (Intel VT-x or AMD SVM)"
    )]
    SoftwareKvm,
    #[error("no guest {0}: set CLOVE_VM_KERNEL and CLOVE_VM_INITRAMFS (guest/kernel/build.sh and guest/initramfs.sh build them)")]
    NoImage(&'static str),
    #[error("guest {what} {path}: {source}")]
    Image {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("a VM agent takes a memory limit (its RAM), CPU limits and vCPUs; a process limit would bound nothing in its guest")]
    Limits,
    #[error("microVM: {0}")]
    Vmm(String),
}

/// A VM's boundary is its guest: its memory limit becomes its RAM, and its CPU limits apply to its
/// threads' cgroup. A process limit means nothing to a guest and is refused rather than dropped.
pub(super) fn check_limits(limits: &Limits) -> Result<(), VmTierError> {
    if limits.max_pids.is_some() {
        return Err(VmTierError::Limits);
    }
    Ok(())
}

/// The kernel and initramfs to boot, once the host is known to be able to boot them.
pub(super) fn check_host(image: &VmImage) -> Result<(PathBuf, PathBuf), VmTierError> {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").map_err(VmTierError::NoKvm)?;
    if Path::new("/sys/module/kvm_pvm").exists() {
        return Err(VmTierError::SoftwareKvm);
    }
    let existing = |what: &'static str, path: &Option<PathBuf>| {
        let path = path.clone().ok_or(VmTierError::NoImage(what))?;
        std::fs::metadata(&path).map_err(|source| VmTierError::Image { what, path: path.clone(), source })?;
        Ok(path)
    };
    Ok((existing("kernel", &image.kernel)?, existing("initramfs", &image.initramfs)?))
}

/// The guest's vsock CID (one VM per device: every VM can use the same one).
const GUEST_CID: u64 = 3;
/// Host ports the guest agent connects to (guest/README.md): its protocol channel, the program's
/// stdout and stderr, and its exit status.
const PORT_AGENT: u32 = 1024;
const PORT_STDOUT: u32 = 1025;
const PORT_STDERR: u32 = 1026;
const PORT_STATUS: u32 = 1027;
/// A VM's RAM when the spec sets no memory limit.
const DEFAULT_MEMORY: u64 = 256 << 20;
/// Files the command line names are copied into the guest up to this size each.
const MAX_COPIED_FILE: u64 = 16 << 20;
/// How long PAUSE waits for every vCPU to leave guest mode. A kicked vCPU leaves at once; this
/// bounds only a lost kick.
const PAUSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A running microVM agent: the VM, its vsock device, and where its status and output arrive.
pub(super) struct GuestVm {
    vm: MicroVm,
    vsock: Vsock,
    /// The program's status once the guest sent it (and heard it was received).
    status: Arc<Mutex<Option<i32>>>,
    /// The threads copying output and taking the status; they end when the vsock device closes.
    pumps: Vec<std::thread::JoinHandle<()>>,
    console_log: Option<PathBuf>,
    /// Its threads' cgroup (cgroup v1), for its CPU limits: held to be removed when dropped, last,
    /// once the threads are gone. It holds threads of the host's own process: it is never killed.
    _cgroup: Option<AgentCgroup>,
}

/// Boots `spec`'s program in a fresh VM. Returns the VM and the runtime's end of the agent channel
/// (the guest agent's connection to host port 1024, bridged).
pub(super) fn start(
    id: AgentId,
    spec: &SpawnSpec,
    vm_spec: VmSpec,
    image: &VmImage,
    cgroup: Option<AgentCgroup>,
) -> Result<(GuestVm, UnixStream)> {
    let (kernel, initramfs) = check_host(image)?;
    let memory = spec.limits.memory.unwrap_or(DEFAULT_MEMORY);
    let memory_mib = u32::try_from(memory >> 20).map_err(|_| VmTierError::Vmm(format!("{memory} bytes of RAM")))?;
    let config = VmConfig::new(kernel)
        .vcpus(vm_spec.vcpus)
        .memory_mib(memory_mib)
        .initramfs(initramfs)
        .extra_initramfs(spawn_archive(id, spec)?)
        .serial_log(image.console_log.is_some());
    let mut vm = MicroVm::new(config).map_err(vmm_error)?;
    let vsock = vm.attach_vsock(GUEST_CID).map_err(vmm_error)?;
    let pair = || UnixStream::pair().map_err(|e| RuntimeError::io("creating a vsock bridge", e));
    let (agent_ours, agent_theirs) = pair()?;
    let (mut status_ours, status_theirs) = pair()?;
    vsock.add_host_port(PORT_AGENT, agent_theirs).map_err(vmm_error)?;
    vsock.add_host_port(PORT_STATUS, status_theirs).map_err(vmm_error)?;
    let status = Arc::new(Mutex::new(None));
    let reported = status.clone();
    // The guest powers off only once its status is acknowledged: a vsock write merely queues a
    // packet, which the reset would lose.
    let mut pumps = vec![std::thread::spawn(move || {
        let mut bytes = [0u8; 4];
        if status_ours.read_exact(&mut bytes).is_ok() {
            if let Ok(mut slot) = reported.lock() {
                *slot = Some(i32::from_le_bytes(bytes));
            }
            let _ = status_ours.write_all(&[1]);
        }
    })];
    for (port, sink) in [(PORT_STDOUT, Sink::Stdout), (PORT_STDERR, Sink::Stderr)] {
        if let Some(mut sink) = sink.open(&spec.stdio)? {
            let (mut ours, theirs) = pair()?;
            vsock.add_host_port(port, theirs).map_err(vmm_error)?;
            // Output flows as the guest writes it; the copy ends when the VM's side closes.
            pumps.push(std::thread::spawn(move || {
                let _ = std::io::copy(&mut ours, &mut sink);
            }));
        }
    }
    vm.start().map_err(vmm_error)?;
    // Its threads run from here; the guest's first instants are outside the cgroup, its work is not.
    if let Some(cgroup) = &cgroup {
        for tid in vm.thread_ids().into_iter().chain([vsock.thread_id()]) {
            cgroup.add_thread(tid as u32)?;
        }
    }
    agent_ours.set_nonblocking(true).map_err(|e| RuntimeError::io("configuring the agent channel", e))?;
    Ok((GuestVm { vm, vsock, status, pumps, console_log: image.console_log.clone(), _cgroup: cgroup }, agent_ours))
}

impl GuestVm {
    /// Readable once the VM has stopped: what the reactor watches, as it watches a pidfd.
    pub fn exit_fd(&self) -> std::io::Result<OwnedFd> {
        self.vm.exit_fd().try_clone_to_owned()
    }

    /// A thread of the VM (its first vCPU's), for LIST's pid column.
    pub fn pid(&self) -> u32 {
        self.vm.thread_ids().first().map_or(0, |&tid| tid as u32)
    }

    /// How it ended, or `None` while it runs.
    pub fn try_exit(&self) -> Option<ExitInfo> {
        self.vm.try_exit().map(|exit| self.exit_info(exit))
    }

    pub fn wait(&self) -> ExitInfo {
        self.exit_info(self.vm.wait())
    }

    pub fn kill(&self) {
        self.vm.kill();
    }

    /// PAUSE and RESUME: its vCPUs held out of guest mode, or let back in. The monitor does it, not
    /// the freezer: it needs no cgroup, and it is done when it returns.
    pub fn set_paused(&self, paused: bool) -> std::io::Result<()> {
        if paused {
            self.vm.pause(PAUSE_TIMEOUT).map_err(std::io::Error::other)
        } else {
            self.vm.resume();
            Ok(())
        }
    }

    /// The program's status as the guest reported it before powering off. A guest that stopped
    /// without one (it crashed, or its agent did) has neither a code nor a signal.
    fn exit_info(&self, exit: VmExit) -> ExitInfo {
        let reported = self.status.lock().ok().and_then(|s| *s);
        match (exit, reported) {
            (VmExit::Killed, _) => {
                ExitInfo { code: None, signal: Some(clove_sys::process::SIGKILL), oom_killed: false }
            }
            (VmExit::PoweredOff, Some(code)) => ExitInfo { code: Some(code), signal: None, oom_killed: false },
            (VmExit::PoweredOff | VmExit::Crashed(_), _) => ExitInfo { code: None, signal: None, oom_killed: false },
        }
    }

    /// Why the guest stopped, when it crashed.
    pub fn crash_reason(&self) -> Option<String> {
        match self.vm.try_exit() {
            Some(VmExit::Crashed(reason)) => Some(reason),
            _ => None,
        }
    }
}

impl Drop for GuestVm {
    fn drop(&mut self) {
        self.vm.kill();
        self.vm.wait();
        if let Some(path) = &self.console_log {
            // Best effort: a debugging aid, and the VM is gone either way.
            let _ = std::fs::write(path, self.vm.serial_log());
        }
        // Closing the device's connections ends the output copies.
        self.vsock.shutdown();
        for pump in self.pumps.drain(..) {
            let _ = pump.join();
        }
    }
}

/// Where the program's stdout or stderr goes on the host.
enum Sink {
    Stdout,
    Stderr,
}

impl Sink {
    /// `None` when the output is discarded: the guest then finds no listener and uses /dev/null.
    fn open(self, stdio: &AgentStdio) -> Result<Option<Box<dyn Write + Send>>> {
        Ok(match (stdio, self) {
            (AgentStdio::Null, _) => None,
            (AgentStdio::Inherit, Sink::Stdout) => Some(Box::new(std::io::stdout())),
            (AgentStdio::Inherit, Sink::Stderr) => Some(Box::new(std::io::stderr())),
            (AgentStdio::File(path), _) => Some(Box::new(super::process::open_log(path)?.0)),
        })
    }
}

/// The spawn spec as the guest agent reads it.
#[derive(serde::Serialize)]
struct GuestSpawn {
    /// Its id and name on the host: what the program in the guest is told it is.
    id: u64,
    name: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: String,
}

/// A second initramfs with `/clove/spawn.json` and the files the command line names (a script and
/// its arguments), at the paths the command line then uses.
fn spawn_archive(id: AgentId, spec: &SpawnSpec) -> Result<Vec<u8>> {
    // Relative paths are the host's, as in the other tiers: from its cwd, by default this process's.
    let host_cwd = spec.cwd.clone().or_else(|| std::env::current_dir().ok()).unwrap_or_else(|| PathBuf::from("/"));
    let mut archive = CpioWriter::new();
    let mut argv = spec.argv.clone();
    for arg in argv.iter_mut().skip(1) {
        let named = (!arg.starts_with('-')).then(|| host_cwd.join(&*arg)).filter(|p| p.is_file());
        let Some(file) = named.and_then(|p| std::fs::canonicalize(p).ok()) else { continue };
        let data = read_capped(&file)?;
        let guest_path = file.display().to_string();
        for dir in file.ancestors().skip(1).collect::<Vec<_>>().into_iter().rev().skip(1) {
            archive.dir(&dir.display().to_string(), 0o755).map_err(vmm_error)?;
        }
        archive.file(&guest_path, 0o644, &data).map_err(vmm_error)?;
        *arg = guest_path;
    }
    let env = spec.env.clone();
    let cwd = spec.cwd.as_ref().map_or_else(|| "/".into(), |c| c.display().to_string());
    let json = serde_json::to_vec(&GuestSpawn { id: id.0, name: spec.name.clone(), argv, env, cwd })
        .map_err(|e| RuntimeError::Internal(format!("encoding the spawn spec: {e}")))?;
    archive.dir("/clove", 0o755).map_err(vmm_error)?;
    archive.file("/clove/spawn.json", 0o644, &json).map_err(vmm_error)?;
    Ok(archive.finish())
}

fn read_capped(file: &Path) -> Result<Vec<u8>> {
    let size = std::fs::metadata(file).map_err(|e| RuntimeError::io(format!("reading {}", file.display()), e))?.len();
    if size > MAX_COPIED_FILE {
        return Err(RuntimeError::LimitExceeded(format!(
            "{}: {size} bytes; files copied into a VM are at most {MAX_COPIED_FILE}",
            file.display()
        )));
    }
    std::fs::read(file).map_err(|e| RuntimeError::io(format!("reading {}", file.display()), e))
}

fn vmm_error(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Vm(VmTierError::Vmm(e.to_string()))
}
