//! The anchor: QEMU `-M microvm -accel kvm` booting the same kernel and initramfs, one process per
//! VM, with a vhost-vsock device. Ready is the same event as for Clove: the guest agent's HELLO on
//! host port 1024, here an AF_VSOCK listener of this host's kernel.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clove_vmm::builder::BASE_CMDLINE;

use super::{expect_hello, mem, vsock, Idle, Options, Vmm, AGENT_PORT, DEADLINE};
use crate::Result;

/// CIDs 0-2 are reserved; concurrent guests get 3, 4, ...
const FIRST_CID: u32 = 3;

/// QEMU's command line up to its arguments: `CLOVE_BENCH_QEMU`, else `qemu-system-x86_64` from PATH.
pub fn command_prefix() -> Option<Vec<String>> {
    if let Ok(prefix) = std::env::var("CLOVE_BENCH_QEMU") {
        return Some(prefix.split_whitespace().map(String::from).collect());
    }
    super::on_path("qemu-system-x86_64").then(|| vec!["qemu-system-x86_64".to_string()])
}

pub struct Qemu<'a> {
    options: &'a Options,
    prefix: &'a [String],
    listener: vsock::Listener,
}

/// A QEMU process, killed when dropped, and its guest agent's channel once it said HELLO.
struct Running {
    child: Child,
    cid: u32,
    log: PathBuf,
    agent: Option<UnixStream>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

impl<'a> Qemu<'a> {
    pub fn new(options: &'a Options, prefix: &'a [String]) -> Result<Qemu<'a>> {
        Ok(Qemu { options, prefix, listener: vsock::Listener::bind(AGENT_PORT)? })
    }

    fn spawn(&self, cid: u32) -> Result<Running> {
        let o = self.options;
        let log = std::env::temp_dir().join(format!("clove-bench-qemu-{cid}.log"));
        // The guest's command line is Clove's (builder.rs: console off unless asked); QEMU adds the
        // virtio_mmio.device= of its vsock slot itself (auto-kernel-cmdline, without ACPI).
        let (console, serial) = if o.console {
            ("console=ttyS0".to_string(), format!("file:{}.console", log.display()))
        } else {
            ("8250.nr_uarts=0 quiet".to_string(), "null".to_string())
        };
        let (program, args) = self.prefix.split_first().ok_or("empty QEMU command line")?;
        let child = Command::new(program)
            .args(args)
            .args(["-M", "microvm,x-option-roms=off,isa-serial=on,rtc=off,acpi=off,auto-kernel-cmdline=on"])
            .args(["-accel", "kvm", "-cpu", "host", "-smp", "1", "-m", &format!("{}M", o.memory_mib)])
            .args(["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", &serial])
            // The i8042 is the guest's power button (reboot=k), as in a Clove VM.
            .args(["-device", "i8042", "-device", &format!("vhost-vsock-device,guest-cid={cid}")])
            .arg("-kernel")
            .arg(&o.kernel)
            .arg("-initrd")
            .arg(&o.initramfs)
            .args(["-append", format!("{BASE_CMDLINE} {console} {}", o.cmdline_extra).trim_end()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()
            .map_err(|e| format!("starting {program}: {e}"))?;
        Ok(Running { child, cid, log, agent: None })
    }

    /// Waits until every VM in `vms` has said HELLO; fails if one of them exits first.
    fn wait_ready(&self, vms: &mut [Running]) -> Result<()> {
        let deadline = Instant::now() + DEADLINE;
        while vms.iter().any(|vm| vm.agent.is_none()) {
            for vm in vms.iter_mut() {
                if let Some(status) = vm.child.try_wait()? {
                    let log = std::fs::read_to_string(&vm.log).unwrap_or_default();
                    return Err(format!("QEMU (guest CID {}) exited with {status}:\n{log}", vm.cid).into());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("no HELLO from QEMU's guest within {DEADLINE:?}").into());
            }
            let Some((mut stream, cid)) = self.listener.accept(Instant::now() + Duration::from_millis(100))? else {
                continue;
            };
            let vm = vms.iter_mut().find(|vm| vm.cid == cid && vm.agent.is_none());
            let vm = vm.ok_or_else(|| format!("a connection from unexpected guest CID {cid}"))?;
            expect_hello(&mut stream)?;
            vm.agent = Some(stream);
        }
        Ok(())
    }

    fn start_ready(&self, n: usize) -> Result<Vec<Running>> {
        let mut vms = (0..n as u32).map(|i| self.spawn(FIRST_CID + i)).collect::<Result<Vec<_>>>()?;
        self.wait_ready(&mut vms)?;
        Ok(vms)
    }
}

impl Vmm for Qemu<'_> {
    fn name(&self) -> &'static str {
        "QEMU microvm"
    }

    fn boot(&mut self) -> Result<Duration> {
        let start = Instant::now();
        let _vm = self.start_ready(1)?;
        Ok(start.elapsed())
    }

    fn exec(&mut self, n: usize) -> Result<Vec<Duration>> {
        let _vm = self.start_ready(1)?;
        let mut control = super::connect_retrying(|| vsock::connect(FIRST_CID, AGENT_PORT))?;
        super::exec_round_trips(&mut control, n)
    }

    fn idle(&mut self, n: usize) -> Result<Idle> {
        let vms = self.start_ready(n)?;
        std::thread::sleep(Duration::from_secs(1));
        let (mut overhead, mut private, mut guest) = (0u64, 0u64, 0u64);
        for vm in &vms {
            let maps = mem::mappings(&vm.child.id().to_string())?;
            let (rss_kib, private_kib) = mem::totals(&maps);
            let ram = mem::guest_ram(&maps, u64::from(self.options.memory_mib) * 1024)?;
            overhead += rss_kib - ram.rss_kib;
            private += private_kib - ram.private_kib;
            guest += ram.rss_kib;
        }
        let per_vm = |kib: u64| kib as f64 / n as f64;
        Ok(Idle { overhead_kib: per_vm(overhead), private_kib: Some(per_vm(private)), guest_kib: per_vm(guest) })
    }

    fn concurrent(&mut self, n: usize) -> Result<Duration> {
        let start = Instant::now();
        let _vms = self.start_ready(n)?;
        Ok(start.elapsed())
    }
}
