//! `clove-bench --vm-entry`: from opening /dev/kvm to the first guest instruction, on this host's
//! KVM (kvm_pvm here). The guest is one real-mode instruction, `out 0x80, al`, whose exit marks the
//! end. Clove's path (`clove_vmm::Vm`: open, create the VM, map and register its RAM, one vCPU) is
//! timed beside the same steps done with bare kvm-ioctls calls, alternating.

use std::time::{Duration, Instant};

use clove_vmm::bus::Bus;
use clove_vmm::{Exit, Vm};
use kvm_bindings::{kvm_regs, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuExit};
use vm_memory::{Bytes, GuestAddress};

use super::median;
use crate::Result;

/// out 0x80, al ; hlt
const CODE: [u8; 3] = [0xe6, 0x80, 0xf4];
const ENTRY: u16 = 0x1000;
const RAM: usize = 64 << 10;
/// Published for raw KVM on this kind of machine (ANCHORS.md, "MicroVMs").
const ANCHOR: &str = "0.3–0.5 ms";

const USAGE: &str = "usage: clove-bench --vm-entry [--runs N]

  --runs N   measured runs of each path, alternating, after 5 unmeasured (default 200)";

/// Clove: `Vm::new` opens /dev/kvm, creates the VM and registers its RAM.
fn clove_once() -> Result<Duration> {
    let start = Instant::now();
    let vm = Vm::new(RAM)?;
    vm.memory().write_slice(&CODE, GuestAddress(u64::from(ENTRY)))?;
    let mut vcpu = vm.create_vcpu(0)?;
    vcpu.enter_real_mode(ENTRY)?;
    let exit = vcpu.run(&Bus::default())?;
    let elapsed = start.elapsed();
    if exit != Exit::Io {
        return Err(format!("the first exit was {exit:?}, not the `out`").into());
    }
    Ok(elapsed)
}

/// The same steps with kvm-ioctls alone and an anonymous mapping.
fn raw_once() -> Result<Duration> {
    let start = Instant::now();
    // Declared first so it is unmapped last, after the VM and its vCPU are gone.
    let ram = Mapping::new(RAM)?;
    let kvm = Kvm::new()?;
    let vm = kvm.create_vm()?;
    // SAFETY: the mapping is RAM bytes long and `ram` outlives the vCPU run below.
    let bytes = unsafe { std::slice::from_raw_parts_mut(ram.0, RAM) };
    bytes[usize::from(ENTRY)..usize::from(ENTRY) + CODE.len()].copy_from_slice(&CODE);
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: RAM as u64,
        userspace_addr: ram.0 as u64,
    };
    // SAFETY: the region is `ram`, which stays mapped until after `vm` and its vCPU are dropped.
    unsafe { vm.set_user_memory_region(region) }?;
    let mut vcpu = vm.create_vcpu(0)?;
    let mut sregs = vcpu.get_sregs()?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs)?;
    vcpu.set_regs(&kvm_regs { rip: u64::from(ENTRY), rflags: 0x2, ..Default::default() })?;
    let exit = vcpu.run()?;
    let elapsed = start.elapsed();
    if !matches!(exit, VcpuExit::IoOut(0x80, _)) {
        return Err(format!("the first exit was {exit:?}, not the `out`").into());
    }
    Ok(elapsed)
}

/// Anonymous private memory, unmapped on drop.
struct Mapping(*mut u8, usize);

impl Mapping {
    fn new(len: usize) -> Result<Mapping> {
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(Mapping(addr.cast(), len))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping this value created, unmapped once.
        unsafe { libc::munmap(self.0.cast(), self.1) };
    }
}

fn run(runs: usize) -> Result<[Vec<Duration>; 2]> {
    let (mut clove, mut raw) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for i in 0..runs + 5 {
        let (c, r) = (clove_once()?, raw_once()?);
        if i >= 5 {
            clove.push(c);
            raw.push(r);
        }
    }
    Ok([clove, raw])
}

fn render(runs: usize, [clove, raw]: &[Vec<Duration>; 2]) -> String {
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    let p90 = |s: &[Duration]| {
        let mut sorted = s.to_vec();
        sorted.sort();
        sorted.get(sorted.len() * 9 / 10).copied().unwrap_or_default()
    };
    let kvm = if std::path::Path::new("/sys/module/kvm_pvm").exists() { "kvm_pvm" } else { "KVM" };
    let ratio = median(clove).as_secs_f64() / median(raw).as_secs_f64().max(f64::MIN_POSITIVE);
    format!(
        "## /dev/kvm open to the first guest instruction (this host's {kvm}, not emulated; {runs} runs each)\n\n\
         | path | p50 | p90 | ratio to bare kvm-ioctls | anchor (raw KVM here, ANCHORS.md) |\n\
         |---|---|---|---|---|\n\
         | Clove (`clove_vmm::Vm`) | {} | {} | {ratio:.2}× | {ANCHOR} |\n\
         | bare kvm-ioctls, same run | {} | {} | 1.00× | {ANCHOR} |",
        ms(median(clove)),
        ms(p90(clove)),
        ms(median(raw)),
        ms(p90(raw)),
    )
}

pub fn main() {
    let args = std::env::args().skip(1).filter(|a| a != "--vm-entry");
    let result = crate::flag_values(args, USAGE).and_then(|pairs| {
        let mut runs = 200;
        for (flag, value) in pairs {
            match flag.as_str() {
                "--runs" => runs = value.parse::<usize>().map_err(|e| format!("--runs {value}: {e}"))?.max(1),
                _ => return Err(format!("unknown option {flag}\n{USAGE}").into()),
            }
        }
        Ok(render(runs, &run(runs)?))
    });
    match result {
        Ok(text) => println!("{text}"),
        Err(e) => {
            eprintln!("clove-bench --vm-entry: {e}");
            std::process::exit(1);
        }
    }
}
