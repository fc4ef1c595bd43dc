//! The guest as PID 1 of a fresh PID and mount namespace (`unshare`), which is as close to the VM
//! as a host gets: its mounts, loopback, orphan reaping and power-off all run for real. Needs root.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use common::*;

#[test]
fn as_pid1_it_mounts_reaps_orphans_and_powers_off() {
    // SAFETY: geteuid takes no arguments and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let unshare = Path::new("/usr/bin/unshare").exists();
    if !root || !unshare {
        eprintln!("SKIPPED: as_pid1_it_mounts_reaps_orphans_and_powers_off needs root and unshare(1)");
        return;
    }
    // Not under /tmp, /run or /dev: the guest mounts over those, and its sockets live here.
    let mut host = Host::new_in(Path::new("/var/tmp"), "pid1", &[1024, 1025, 1026, 1027]);
    // An orphan (the subshell's sleep) that only PID 1 can reap; then count zombies in the namespace.
    let script = "cat /proc/1/comm; stat -f -c %T /tmp; cat /sys/class/net/lo/flags; (sleep 0.1 &); sleep 1; \
                  grep -l '^[0-9]* ([^)]*) Z' /proc/[0-9]*/stat | wc -l; exit 5";
    let spec = serde_json::json!({ "argv": ["/bin/sh", "-c", script] });
    let launcher = ["/usr/bin/unshare", "--pid", "--fork", "--mount", "--net", "--propagation", "private"];
    host.start_under(&launcher, Some(&spec.to_string()));
    let _channel = host.accept_hello();
    let (stdout, _stderr) = (host.accept(1025), host.accept(1026));
    assert_eq!(read_all(stdout), b"clove-guest\ntmpfs\n0x9\n0\n", "PID 1, /proc, /tmp, /sys, lo up, no zombies");
    assert_eq!(read_all(host.accept(1027)), 5i32.to_le_bytes());
    // reboot(2) in a PID namespace ends its init with SIGHUP, which unshare passes on.
    assert_eq!(host.wait_exit().signal(), Some(libc::SIGHUP), "the guest powered off");
}
