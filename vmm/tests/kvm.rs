//! KVM plumbing on this machine's own /dev/kvm, with real-mode guest code: exits served by the
//! bus, memory, vCPU threads stopped by the guest (i8042 reset, triple fault) or by a kill, and
//! create/destroy cycles that leave no thread or fd behind. Tests take one lock: the leak count
//! reads the whole process.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use clove_vmm::bus::Bus;
use clove_vmm::devices::i8042::I8042;
use clove_vmm::devices::serial::{SerialConsole, SerialLog};
use clove_vmm::devices::BusDevice;
use clove_vmm::vstate::VmRun;
use clove_vmm::{BuildError, Exit, MicroVm, Vm, VmConfig, VmExit};
use vm_memory::{Bytes, GuestAddress};

static SERIAL: Mutex<()> = Mutex::new(());

/// `/dev/kvm` is there to use (and this test runs alone), or the test says SKIPPED loudly.
fn kvm_or_skip(test: &str) -> Option<MutexGuard<'static, ()>> {
    let guard = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let usable = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    if !usable {
        eprintln!("SKIPPED: {test}: /dev/kvm cannot be opened here");
        return None;
    }
    Some(guard)
}

/// Records every access; reads return 0x40 + the offset.
#[derive(Default)]
struct Recorder(Vec<(&'static str, u64, Vec<u8>)>);

impl BusDevice for Recorder {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0x40 + offset as u8);
        self.0.push(("read", offset, data.to_vec()));
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        self.0.push(("write", offset, data.to_vec()));
    }
}

#[test]
fn guest_port_and_mmio_accesses_reach_the_bus_devices() {
    let Some(_serial) = kvm_or_skip("guest_port_and_mmio_accesses_reach_the_bus_devices") else { return };
    let vm = Vm::new(64 << 10).unwrap();
    // mov dx, 0x3f8 ; mov al, 'C' ; out dx, al ; in al, dx ; mov bx, 0x8000 ; mov ds, bx ;
    // mov [0], al ; mov al, [1] ; in al, 0x71 ; mov ah, al ; hlt
    let code: &[u8] = &[
        0xba, 0xf8, 0x03, 0xb0, b'C', 0xee, 0xec, 0xbb, 0x00, 0x80, 0x8e, 0xdb, 0xa2, 0x00, 0x00, 0xa0, 0x01, 0x00,
        0xe4, 0x71, 0x88, 0xc4, 0xf4,
    ];
    vm.memory().write_slice(code, GuestAddress(0x1000)).unwrap();
    let (ports, mmio) = (Arc::new(Mutex::new(Recorder::default())), Arc::new(Mutex::new(Recorder::default())));
    let mut bus = Bus::default();
    bus.pio.insert(0x3f8, 8, ports.clone()).unwrap();
    // RAM ends at 64 KiB; 0x8000:0 is 0x80000.
    bus.mmio.insert(0x80000, 0x1000, mmio.clone()).unwrap();
    let mut vcpu = vm.create_vcpu(0).unwrap();
    vcpu.enter_real_mode(0x1000).unwrap();
    let exits: Vec<Exit> = (0..6).map(|_| vcpu.run(&bus).unwrap()).collect();
    assert_eq!(exits, [Exit::Io, Exit::Io, Exit::Io, Exit::Io, Exit::Io, Exit::Halt]);
    assert_eq!(ports.lock().unwrap().0, [("write", 0, vec![b'C']), ("read", 0, vec![0x40])]);
    // The `in` read 0x40, which the store wrote to MMIO; the load read offset 1.
    assert_eq!(mmio.lock().unwrap().0, [("write", 0, vec![0x40]), ("read", 1, vec![0x41])]);
    let regs = vcpu.fd().get_regs().unwrap();
    assert_eq!(regs.rax & 0xffff, 0xffff, "port 0x71 has no device: it reads all ones");
}

#[test]
fn a_write_of_the_notifier_value_signals_its_eventfd_and_never_reaches_the_bus() {
    let Some(_serial) = kvm_or_skip("a_write_of_the_notifier_value_signals_its_eventfd") else { return };
    let vm = Vm::new(64 << 10).unwrap();
    // mov bx, 0x8000 ; mov ds, bx ; mov dword [0x50], 1 ; mov dword [0x50], 2 ; hlt
    let code: &[u8] = &[
        0xbb, 0x00, 0x80, 0x8e, 0xdb, 0x66, 0xc7, 0x06, 0x50, 0x00, 0x01, 0x00, 0x00, 0x00, 0x66, 0xc7, 0x06, 0x50,
        0x00, 0x02, 0x00, 0x00, 0x00, 0xf4,
    ];
    vm.memory().write_slice(code, GuestAddress(0x1000)).unwrap();
    let mmio = Arc::new(Mutex::new(Recorder::default()));
    let mut bus = Bus::default();
    bus.mmio.insert(0x80000, 0x1000, mmio.clone()).unwrap();
    let notifier = vm.write_notifier(0x80050, 1).unwrap();
    let mut vcpu = vm.create_vcpu(0).unwrap();
    vcpu.enter_real_mode(0x1000).unwrap();
    let exits: Vec<Exit> = (0..2).map(|_| vcpu.run(&bus).unwrap()).collect();
    assert_eq!(exits, [Exit::Io, Exit::Halt], "the write of 1 exits nowhere, the write of 2 to the bus");
    assert_eq!(notifier.read().unwrap(), 1, "the write of 1 signalled the eventfd once");
    assert_eq!(mmio.lock().unwrap().0, [("write", 0x50, vec![2, 0, 0, 0])]);
}

#[test]
fn guest_memory_holds_what_the_host_wrote_and_the_guest_stored() {
    let Some(_serial) = kvm_or_skip("guest_memory_holds_what_the_host_wrote_and_the_guest_stored") else {
        return;
    };
    let vm = Vm::new(64 << 10).unwrap();
    // mov byte [0x2000], 0x5a ; hlt
    let code: &[u8] = &[0xc6, 0x06, 0x00, 0x20, 0x5a, 0xf4];
    vm.memory().write_slice(code, GuestAddress(0x1000)).unwrap();
    let mut vcpu = vm.create_vcpu(0).unwrap();
    vcpu.enter_real_mode(0x1000).unwrap();
    assert_eq!(vcpu.run(&Bus::default()).unwrap(), Exit::Halt);
    let stored: u8 = vm.memory().read_obj(GuestAddress(0x2000)).unwrap();
    assert_eq!(stored, 0x5a, "a store to RAM lands in the host's mapping, with no exit");
}

/// A VM with the interrupt controllers, a serial console with a log and the i8042, running
/// `code` at 0x1000 in real mode on `vcpus` threads (the others wait for a SIPI in KVM).
struct RealModeVm {
    run: Arc<VmRun>,
    log: SerialLog,
    vm: Vm,
}

impl RealModeVm {
    fn start(code: &[u8], vcpus: u64) -> RealModeVm {
        let vm = Vm::new(1 << 20).unwrap();
        vm.create_interrupt_controllers().unwrap();
        vm.memory().write_slice(code, GuestAddress(0x1000)).unwrap();
        let vcpus: Vec<_> = (0..vcpus).map(|id| vm.create_vcpu(id).unwrap()).collect();
        for vcpu in &vcpus {
            vcpu.enter_real_mode(0x1000).unwrap();
        }
        let run = VmRun::new(vcpus.len()).unwrap();
        let log = SerialLog::new(64);
        let mut bus = Bus::default();
        let serial = SerialConsole::new(vm.irq_line(4).unwrap(), Some(log.clone()));
        bus.pio.insert(0x3f8, 8, Arc::new(Mutex::new(serial))).unwrap();
        let on_reset = Arc::downgrade(&run);
        let i8042 = I8042::new(move || {
            if let Some(run) = on_reset.upgrade() {
                run.stop(VmExit::PoweredOff);
            }
        });
        bus.pio.insert(0x60, 5, Arc::new(Mutex::new(i8042))).unwrap();
        run.start(vcpus, Arc::new(bus)).unwrap();
        RealModeVm { run, log, vm }
    }
}

impl Drop for RealModeVm {
    fn drop(&mut self) {
        self.run.kill_and_join();
    }
}

/// mov al, 0xfe ; out 0x64, al ; jmp $
const RESET: [u8; 6] = [0xb0, 0xfe, 0xe6, 0x64, 0xeb, 0xfe];
/// jmp $
const SPIN: [u8; 2] = [0xeb, 0xfe];
/// inc dword [0x2000] ; jmp back to it
const COUNT: [u8; 7] = [0x66, 0xff, 0x06, 0x00, 0x20, 0xeb, 0xf9];

/// Polls `exit_fd` until readable or the deadline.
fn readable_within(fd: std::os::fd::BorrowedFd<'_>, deadline: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut poll = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut poll, 1, deadline.as_millis() as i32) };
    n == 1 && poll.revents & libc::POLLIN != 0
}

#[test]
fn guest_writes_the_console_then_resets_through_the_i8042_and_the_vm_powers_off() {
    let Some(_serial) = kvm_or_skip("guest_writes_the_console_then_resets_through_the_i8042") else { return };
    // mov dx, 0x3f8 ; mov al, 'H' ; out dx, al ; mov al, 'i' ; out dx, al ; then RESET
    let mut code = vec![0xba, 0xf8, 0x03, 0xb0, b'H', 0xee, 0xb0, b'i', 0xee];
    code.extend_from_slice(&RESET);
    let vm = RealModeVm::start(&code, 2);
    assert!(readable_within(vm.run.exit_fd(), Duration::from_secs(30)), "the exit fd never became readable");
    assert_eq!(vm.run.wait(), VmExit::PoweredOff);
    assert_eq!(vm.run.try_exit(), Some(VmExit::PoweredOff));
    assert_eq!(vm.log.contents(), b"Hi");
    assert!(vm.run.thread_ids().is_empty(), "every vCPU thread has left guest mode");
}

#[test]
fn a_spinning_guest_is_killed_and_its_threads_were_visible() {
    let Some(_serial) = kvm_or_skip("a_spinning_guest_is_killed_and_its_threads_were_visible") else { return };
    let vm = RealModeVm::start(&SPIN, 2);
    let tids = vm.run.thread_ids();
    assert_eq!(tids.len(), 2, "start returns once each vCPU thread is running");
    for tid in &tids {
        assert!(std::path::Path::new(&format!("/proc/self/task/{tid}")).exists());
    }
    assert_eq!(vm.run.try_exit(), None);
    vm.run.stop(VmExit::Killed);
    // A lost kick would leave the vCPU spinning: the deadline is for that, not a timing claim.
    assert!(readable_within(vm.run.exit_fd(), Duration::from_secs(30)), "kill did not stop the vCPUs");
    assert_eq!(vm.run.wait(), VmExit::Killed);
    vm.run.stop(VmExit::PoweredOff);
    assert_eq!(vm.run.wait(), VmExit::Killed, "the first reason to stop wins");
}

#[test]
fn a_paused_guest_runs_no_instruction_until_resumed_and_a_kill_ends_it_paused() {
    let Some(_serial) = kvm_or_skip("a_paused_guest_runs_no_instruction_until_resumed") else { return };
    // vCPU 1 waits for a SIPI inside KVM_RUN: the kick must reach a vCPU blocked there too.
    let vm = RealModeVm::start(&COUNT, 2);
    let count = || vm.vm.memory().read_obj::<u32>(GuestAddress(0x2000)).unwrap();
    let counts_on = |from: u32| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while count() == from && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        count() != from
    };
    assert!(counts_on(0), "the guest never ran");
    for _ in 0..3 {
        vm.run.pause(Duration::from_secs(30)).unwrap();
        let paused_at = count();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(count(), paused_at, "a paused guest went on counting");
        vm.run.resume();
        assert!(counts_on(paused_at), "the resumed guest did not run again");
    }
    vm.run.pause(Duration::from_secs(30)).unwrap();
    vm.run.stop(VmExit::Killed);
    assert!(readable_within(vm.run.exit_fd(), Duration::from_secs(30)), "a paused VM did not stop when killed");
    assert_eq!(vm.run.wait(), VmExit::Killed);
    assert!(matches!(vm.run.pause(Duration::from_secs(1)), Err(clove_vmm::VmError::Stopped)));
}

#[test]
fn a_triple_fault_crashes_the_vm_and_not_the_host() {
    let Some(_serial) = kvm_or_skip("a_triple_fault_crashes_the_vm_and_not_the_host") else { return };
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        // kvm_pvm keeps re-delivering the fault instead of reporting a shutdown (seen here);
        // the test runs on a real KVM (the nested harness).
        eprintln!("SKIPPED: a_triple_fault_crashes_the_vm_and_not_the_host: kvm_pvm reports no triple fault");
        return;
    }
    // lidt [0x1100] (an empty IDT: zeros there) ; int3
    let code = [0x0f, 0x01, 0x1e, 0x00, 0x11, 0xcc];
    let vm = RealModeVm::start(&code, 1);
    assert!(readable_within(vm.run.exit_fd(), Duration::from_secs(30)), "the triple fault did not stop the VM");
    match vm.run.wait() {
        VmExit::Crashed(why) => assert!(why.contains("shutdown"), "{why}"),
        other => panic!("a triple fault ended the VM as {other:?}"),
    }
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn create_destroy_cycles_leave_no_threads_fds_or_mappings_behind() {
    let Some(_serial) = kvm_or_skip("create_destroy_cycles_leave_no_threads_fds_or_mappings_behind") else {
        return;
    };
    let cycle = || {
        drop(RealModeVm::start(&SPIN, 2));
        let mut unbooted = MicroVm::new(VmConfig::new("/nonexistent/vmlinux").vcpus(2).memory_mib(16)).unwrap();
        // A vsock device's poller thread and eventfds go with the VM too.
        let vsock = unbooted.attach_vsock(3).unwrap();
        assert!(unbooted.start().is_err(), "a missing kernel fails the start");
        drop((vsock, unbooted));
    };
    // 100 by default. The nested harness sets 0: there every ioctl is emulated, and long runs of
    // them have frozen the emulated machine; the count is this test's job on the host's own KVM.
    let cycles: usize = std::env::var("CLOVE_VM_CYCLES").ok().and_then(|n| n.parse().ok()).unwrap_or(100);
    if cycles == 0 {
        eprintln!("create/destroy cycles: none asked for here (CLOVE_VM_CYCLES=0)");
        return;
    }
    // Warm up what is made once per process (the signal handler, lazily opened files) and what
    // the C library keeps for reuse (its cache of thread stacks, its per-thread malloc arenas).
    for _ in 0..4 {
        cycle();
    }
    let mappings = || std::fs::read_to_string("/proc/self/maps").map(|m| m.lines().count()).unwrap_or(0);
    let before = (count("/proc/self/task"), count("/proc/self/fd"), mappings());
    for _ in 0..cycles {
        cycle();
    }
    let after = (count("/proc/self/task"), count("/proc/self/fd"), mappings());
    assert_eq!(after, before, "(threads, fds, memory mappings) left behind after {cycles} cycles");
}

#[test]
fn a_microvm_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<MicroVm>();
}

#[test]
fn config_limits_are_checked_before_kvm_is_touched() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let vm = |vcpus, mib| MicroVm::new(VmConfig::new("vmlinux").vcpus(vcpus).memory_mib(mib)).err();
    assert!(matches!(vm(0, 256), Some(BuildError::Vcpus(0))));
    assert!(matches!(vm(33, 256), Some(BuildError::Vcpus(33))));
    assert!(matches!(vm(1, 8), Some(BuildError::Memory(8))));
    assert!(matches!(vm(1, 4096), Some(BuildError::Memory(4096))));
}
