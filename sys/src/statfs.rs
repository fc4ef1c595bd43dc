//! `statfs`, to tell which filesystem is mounted at a path (the cgroup layer asks whether
//! `/sys/fs/cgroup` is cgroup2 or a tmpfs holding v1 hierarchies).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::cvt;

/// `f_type` of a cgroup v2 (unified) mount.
pub const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
/// `f_type` of a cgroup v1 hierarchy mount.
pub const CGROUP_SUPER_MAGIC: u64 = 0x0027_e0eb;
/// `f_type` of a tmpfs, which holds the v1 hierarchies on legacy and hybrid systems.
pub const TMPFS_MAGIC: u64 = 0x0102_1994;

/// The filesystem type (`f_type`, the superblock magic) of the filesystem holding `path`.
pub fn filesystem_magic(path: &Path) -> io::Result<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: an all-zero `statfs` is a valid value of a plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and outlives the call; `st` is valid for writes.
    cvt(unsafe { libc::statfs(c_path.as_ptr(), &mut st) })?;
    // `f_type` is a signed word on some targets; the magics are small positive numbers.
    Ok(st.f_type as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_is_procfs() {
        assert_eq!(filesystem_magic(Path::new("/proc")).unwrap(), libc::PROC_SUPER_MAGIC as u64);
    }

    #[test]
    fn missing_path_is_not_found() {
        let err = filesystem_magic(Path::new("/nonexistent/clove")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
