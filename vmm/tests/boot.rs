//! Boots a real Linux guest: the kernel in `CLOVE_GUEST_KERNEL` (vmlinux or bzImage) with the
//! initramfs in `CLOVE_GUEST_INITRAMFS`, whose /init prints a marker (`CLOVE_GUEST_MARKER`,
//! by default `CLOVE-GUEST-INIT-RAN`) on the console and powers off (`reboot -f`). The host
//! appends a second archive with /clove/spawn.json; with the default marker, /init is expected
//! to print that file too, proving the appended archive was unpacked.
//!
//! Without those variables, or on this machine's kvm_pvm (which cannot boot Linux), the test
//! says SKIPPED; with `CLOVE_REQUIRE_KVM=1` (the nested harness) a skip is a failure.

use std::time::Duration;

use clove_vmm::initramfs::CpioWriter;
use clove_vmm::{MicroVm, VmConfig, VmExit};

const DEFAULT_MARKER: &str = "CLOVE-GUEST-INIT-RAN";
const SPAWN_JSON: &str = r#"{"argv":["/bin/true"],"env":[],"cwd":"/"}"#;

/// The guest to boot, or why there is none here.
fn guest() -> Result<(String, String), String> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let (kernel, initramfs) = (var("CLOVE_GUEST_KERNEL")?, var("CLOVE_GUEST_INITRAMFS")?);
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        return Err("this /dev/kvm is kvm_pvm, which cannot boot a Linux guest".into());
    }
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return Err("/dev/kvm cannot be opened".into());
    }
    Ok((kernel, initramfs))
}

fn guest_or_skip(test: &str) -> Option<(String, String)> {
    match guest() {
        Ok(guest) => Some(guest),
        Err(why) if std::env::var("CLOVE_REQUIRE_KVM").as_deref() == Ok("1") => {
            panic!("{test}: CLOVE_REQUIRE_KVM=1 but {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: {test}: {why}");
            None
        }
    }
}

/// Waits for the VM's exit fd with a deadline (a hung guest fails the test, not the run).
fn wait_with_deadline(vm: &MicroVm, deadline: Duration) -> Option<VmExit> {
    use std::os::fd::AsRawFd;
    let mut poll = libc::pollfd { fd: vm.exit_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call.
    let ready = unsafe { libc::poll(&mut poll, 1, deadline.as_millis() as i32) };
    (ready == 1).then(|| vm.wait())
}

fn boot(test: &str, vcpus: u8) {
    let Some((kernel, initramfs)) = guest_or_skip(test) else { return };
    let mut spawn = CpioWriter::new();
    spawn.dir("clove", 0o755).unwrap().file("clove/spawn.json", 0o644, SPAWN_JSON.as_bytes()).unwrap();
    let config = VmConfig::new(kernel)
        .vcpus(vcpus)
        .memory_mib(256)
        .initramfs(initramfs)
        .extra_initramfs(spawn.finish())
        .serial_log(true);
    let mut vm = MicroVm::new(config).unwrap();
    vm.start().unwrap();
    assert_eq!(vm.thread_ids().len(), usize::from(vcpus));
    let exit = wait_with_deadline(&vm, Duration::from_secs(300));
    let log = String::from_utf8_lossy(&vm.serial_log()).into_owned();
    eprintln!("--- guest console ({vcpus} vCPUs) ---\n{log}\n--- end ---");
    assert_eq!(exit, Some(VmExit::PoweredOff), "the guest did not power off cleanly");
    assert!(log.contains("Linux version"), "the kernel did not boot");
    let marker = std::env::var("CLOVE_GUEST_MARKER").unwrap_or_else(|_| DEFAULT_MARKER.to_owned());
    assert!(log.contains(&marker), "/init did not print {marker}");
    if marker == DEFAULT_MARKER {
        assert!(log.contains(SPAWN_JSON), "/init did not see the appended /clove/spawn.json");
        let cpus = format!("{DEFAULT_MARKER} cpus={vcpus}");
        assert!(log.contains(&cpus), "the guest did not bring up {vcpus} CPUs");
    }
}

#[test]
fn linux_boots_on_one_vcpu_runs_init_and_powers_off() {
    boot("linux_boots_on_one_vcpu_runs_init_and_powers_off", 1);
}

#[test]
fn linux_boots_on_two_vcpus_from_the_mp_table() {
    boot("linux_boots_on_two_vcpus_from_the_mp_table", 2);
}
