//! Clove's side: microVMs booted by clove-vmm inside this process. Ready is the guest agent's
//! HELLO arriving on host port 1024 (bridged by the VM's vsock device to a socketpair here).

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use clove_vmm::devices::vsock::Vsock;
use clove_vmm::{MicroVm, VmConfig};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use super::{expect_hello, mem, Options, Vmm, AGENT_PORT, DEADLINE};
use crate::Result;

/// Every VM has its own vsock device, so all can use the same guest CID.
const GUEST_CID: u64 = 3;

/// A running VM whose guest agent has said HELLO.
struct Booted {
    vm: MicroVm,
    vsock: Vsock,
    _agent: UnixStream,
}

pub struct Clove<'a> {
    pub options: &'a Options,
}

impl Vmm for Clove<'_> {
    fn name(&self) -> &'static str {
        "Clove"
    }

    fn boot(&mut self) -> Result<Duration> {
        let start = Instant::now();
        let _vm = boot(self.options)?;
        Ok(start.elapsed())
    }

    fn exec(&mut self, n: usize) -> Result<Vec<Duration>> {
        let booted = boot(self.options)?;
        let mut control = super::connect_retrying(|| Ok(booted.vsock.connect(AGENT_PORT)?))?;
        super::exec_round_trips(&mut control, n)
    }

    fn idle(&mut self, n: usize) -> Result<super::Idle> {
        let before = crate::memory::rss_kib()?;
        let vms = (0..n).map(|_| boot(self.options)).collect::<Result<Vec<_>>>()?;
        // Past its HELLO the guest only starts listening on its control port: let it get there.
        std::thread::sleep(Duration::from_secs(1));
        let after = crate::memory::rss_kib()?;
        let mut guest_kib = 0;
        for booted in &vms {
            let memory = booted.vm.memory();
            let region = memory.find_region(GuestAddress(0)).ok_or("the guest has no RAM at 0")?;
            let host = memory.get_host_address(GuestAddress(0)).map_err(|e| format!("guest RAM: {e}"))?;
            guest_kib += mem::resident_kib(host, region.len() as usize)?;
        }
        let per_vm = |kib: f64| kib / n as f64;
        Ok(super::Idle {
            overhead_kib: per_vm((after - before) as f64 - guest_kib as f64),
            private_kib: None,
            guest_kib: per_vm(guest_kib as f64),
        })
    }

    fn concurrent(&mut self, n: usize) -> Result<Duration> {
        let start = Instant::now();
        let results: Vec<Result<(Booted, Duration)>> = std::thread::scope(|s| {
            let threads: Vec<_> =
                (0..n).map(|_| s.spawn(|| boot(self.options).map(|vm| (vm, start.elapsed())))).collect();
            threads.into_iter().map(|t| t.join().unwrap_or_else(|_| Err("a boot thread panicked".into()))).collect()
        });
        let mut wall = Duration::ZERO;
        for result in results {
            wall = wall.max(result?.1);
        }
        Ok(wall)
    }
}

/// `--dmesg`: one boot, the host's time at each phase and the guest kernel's log. The guest writes
/// a mark to its log as it answers, so the guest clock can be set against the host's: what the
/// mark's timestamp falls short of the host's elapsed time is spent before the guest's clock starts
/// (the VMM's setup, loading, early kernel) plus one EXEC.
pub fn boot_log(o: &Options) -> Result<String> {
    let mut phases = Vec::new();
    let booted = boot_phases(o, &mut phases)?;
    let mut control = super::connect_retrying(|| Ok(booted.vsock.connect(AGENT_PORT)?))?;
    let start = phases[0].1;
    let script = "echo clove-bench: mark >/dev/kmsg; dmesg";
    let reply = super::exec(&mut control, &["sh", "-c", script])?;
    let mut log = String::from("vm: --dmesg boot, host time since before MicroVm::new:\n");
    for (name, at) in &phases {
        log += &format!("vm:   {:>9.1} ms  {name}\n", at.duration_since(start).as_secs_f64() * 1e3);
    }
    log += &format!("vm:   {:>9.1} ms  dmesg received\n", start.elapsed().as_secs_f64() * 1e3);
    log += &String::from_utf8_lossy(&reply);
    Ok(log)
}

/// Builds and starts a VM and waits for its guest agent's HELLO.
fn boot(o: &Options) -> Result<Booted> {
    boot_phases(o, &mut Vec::new())
}

/// [`boot`], noting the time of each phase in `phases`.
fn boot_phases(o: &Options, phases: &mut Vec<(&'static str, Instant)>) -> Result<Booted> {
    phases.push(("start", Instant::now()));
    let config = VmConfig::new(&o.kernel)
        .vcpus(1)
        .memory_mib(o.memory_mib)
        .initramfs(&o.initramfs)
        .serial_log(o.console)
        .cmdline_extra(o.cmdline_extra.clone());
    let mut vm = MicroVm::new(config)?;
    phases.push(("MicroVm::new done", Instant::now()));
    let vsock = vm.attach_vsock(GUEST_CID)?;
    let (mut agent, theirs) = UnixStream::pair()?;
    vsock.add_host_port(AGENT_PORT, theirs)?;
    vm.start()?;
    phases.push(("start done (kernel, initramfs loaded; vCPU threads running)", Instant::now()));
    let console = |vm: &MicroVm| String::from_utf8_lossy(&vm.serial_log()).into_owned();
    if !readable_before_exit(&agent, &vm)? {
        return Err(format!(
            "the VM stopped ({:?}) before its guest said HELLO; console:\n{}",
            vm.try_exit(),
            console(&vm)
        )
        .into());
    }
    agent.set_read_timeout(Some(DEADLINE))?;
    expect_hello(&mut agent).map_err(|e| format!("HELLO: {e}; console:\n{}", console(&vm)))?;
    phases.push(("HELLO", Instant::now()));
    Ok(Booted { vm, vsock, _agent: agent })
}

/// Waits until the agent channel has bytes (true) or the VM has stopped (false), up to [`DEADLINE`].
fn readable_before_exit(agent: &UnixStream, vm: &MicroVm) -> Result<bool> {
    let mut fds = [
        libc::pollfd { fd: agent.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: vm.exit_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
    ];
    let end = Instant::now() + DEADLINE;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no HELLO within {DEADLINE:?}").into());
        }
        // SAFETY: two valid pollfds, alive for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, left.as_millis().min(i32::MAX as u128) as i32) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        if fds[0].revents != 0 {
            return Ok(true);
        }
        if fds[1].revents != 0 {
            return Ok(false);
        }
    }
}
