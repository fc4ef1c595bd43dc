//! Dropping every capability: the bounding set (so no exec can regain one), the ambient set, and
//! the permitted, effective and inheritable sets.

use super::failure::{check, Failure, Stage};

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Empties every capability set of this process. Needs CAP_SETPCAP (in the user namespace) for
/// the bounding set, so it runs while the process still has it.
pub(super) fn drop_all() -> Result<(), Failure> {
    // The kernel's last capability is below 64; PR_CAPBSET_DROP says EINVAL past it.
    for cap in 0..64 {
        // SAFETY: prctl takes integers.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } == -1 {
            let failure = check(-1, Stage::Capabilities, cap as usize);
            // SAFETY: __errno_location returns this thread's errno slot.
            if unsafe { *libc::__errno_location() } == libc::EINVAL && cap > 0 {
                break;
            }
            failure?;
        }
    }
    // SAFETY: prctl takes integers.
    let ret = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    check(ret.into(), Stage::Capabilities, 64)?;
    check(clear_sets(), Stage::Capabilities, 65).map(drop)
}

/// capset to empty permitted, effective and inheritable sets; returns the raw result.
pub(super) fn clear_sets() -> libc::c_long {
    let header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    let data = [CapData { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capset reads the header and two data structs (version 3), all on this stack.
    unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) }
}
