//! What only PID 1 does: mount the kernel's filesystems, make sure fds 0–2 are open, and power off.
//! Nothing here is fatal: a guest missing /sys still serves EXEC.

use std::ffi::CString;
use std::io;
use std::os::fd::{IntoRawFd, RawFd};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("mounting {fstype} on {target}: {source}")]
    Mount { fstype: &'static str, target: &'static str, source: io::Error },
    #[error("creating {target}: {source}")]
    Mkdir { target: &'static str, source: io::Error },
    #[error("bringing up the loopback interface: {0}")]
    Loopback(io::Error),
}

/// (source, target, type, flags, data, mode of the mount point)
type MountSpec = (&'static str, &'static str, &'static str, libc::c_ulong, &'static str, u32);

const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// In order: /dev first, since /dev/pts lives in it.
const MOUNTS: &[MountSpec] = &[
    ("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755", 0o755),
    ("devpts", "/dev/pts", "devpts", libc::MS_NOSUID | libc::MS_NOEXEC, "mode=0620,ptmxmode=0666", 0o755),
    ("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, "", 0o555),
    ("sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC, "", 0o555),
    ("tmpfs", "/tmp", "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=1777", 0o1777),
    ("tmpfs", "/run", "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=0755", 0o755),
];

fn mount_one(&(source, target, fstype, flags, data, mode): &MountSpec) -> Result<(), InitError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(mode).create(target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(InitError::Mkdir { target, source }),
    }
    let c = |s: &str| CString::new(s).unwrap_or_default();
    let (source_c, target_c, fstype_c, data_c) = (c(source), c(target), c(fstype), c(data));
    // SAFETY: every pointer is a NUL-terminated string that outlives the call; mount does not keep
    // them.
    let rc =
        unsafe { libc::mount(source_c.as_ptr(), target_c.as_ptr(), fstype_c.as_ptr(), flags, data_c.as_ptr().cast()) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        // The kernel may have mounted devtmpfs already (CONFIG_DEVTMPFS_MOUNT).
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(InitError::Mount { fstype, target, source: e });
        }
    }
    Ok(())
}

/// Sets up the guest as PID 1. Runs before any other thread exists.
pub fn setup() {
    let mut failures = Vec::new();
    for spec in MOUNTS {
        if let Err(e) = mount_one(spec) {
            failures.push(e);
        }
    }
    open_stdio();
    if let Err(e) = loopback_up() {
        failures.push(e);
    }
    for e in failures {
        crate::log(&e.to_string());
    }
    if std::env::var_os("PATH").is_none() {
        // The kernel starts init without PATH; programs named by bare name need one.
        std::env::set_var("PATH", crate::exec::DEFAULT_PATH);
    }
}

/// The kernel starts init with fds 0–2 on /dev/console only if the initramfs has that node; without
/// it they are closed, and the first socket opened would become "stdout". Fill any gap.
fn open_stdio() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only queries the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            continue;
        }
        let file = std::fs::OpenOptions::new().read(fd == 0).write(fd != 0).open(if fd == 0 {
            "/dev/null"
        } else {
            "/dev/console"
        });
        let file = file.or_else(|_| std::fs::OpenOptions::new().write(true).open("/dev/kmsg"));
        if let Ok(file) = file {
            let raw: RawFd = file.into_raw_fd();
            if raw != fd {
                // SAFETY: both are descriptors of this process; `raw` was just opened and is closed
                // right after being copied to the free slot `fd`.
                unsafe {
                    libc::dup2(raw, fd);
                    libc::close(raw);
                }
            }
        }
    }
}

/// Brings `lo` up, as an init system would: agents may serve each other on 127.0.0.1.
fn loopback_up() -> Result<(), InitError> {
    let failed = || InitError::Loopback(io::Error::last_os_error());
    // SAFETY: socket() takes no pointers; the result is checked and owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(failed());
    }
    // SAFETY: socket() returned a fresh descriptor that nothing else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&sock);
    // SAFETY: ifreq is plain old data; all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name from `req` and writes its flags into it;
    // `req` is a valid ifreq that outlives the call.
    if unsafe { libc::ioctl(raw, libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(failed());
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union, so reading it is reading what the
    // kernel wrote.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    if unsafe { libc::ioctl(raw, libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(failed());
    }
    Ok(())
}

/// Powers the VM off: with `reboot=k` on the command line the kernel resets through the keyboard
/// controller, which the VMM takes as the guest stopping. Never returns.
pub fn power_off() -> ! {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
    // SAFETY: reboot takes no pointers; as PID 1 with CAP_SYS_BOOT it does not return on success.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    crate::log(&format!("reboot failed: {}", io::Error::last_os_error()));
    loop {
        // Exiting PID 1 would panic the kernel; waiting for ever is the lesser failure.
        std::thread::park();
    }
}
