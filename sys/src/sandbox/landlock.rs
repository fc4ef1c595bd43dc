//! Landlock: the ruleset is created in the parent (so a kernel without landlock fails the spawn
//! before any clone) and handles every file-system right of the running ABI; the rules are added
//! by init after `pivot_root` (or by [`super::enter`]'s helper after `setns`), by opening the paths
//! inside. Inside paths are what the policy names, they cover the mounts that exist only inside
//! (the tmpfs `/tmp`, `/dev`, `/proc`), and the inode a rule lands on is the one the program will
//! see. The program restricts itself just before seccomp.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::failure::{check, Failure, Stage};
use super::{invalid, stage_error, LandlockRules};

const SYS_CREATE_RULESET: libc::c_long = 444;
const SYS_ADD_RULE: libc::c_long = 445;
const SYS_RESTRICT_SELF: libc::c_long = 446;
const CREATE_RULESET_VERSION: u32 = 1;
const RULE_PATH_BENEATH: u32 = 1;

const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
/// REMOVE_DIR through MAKE_SYM (ABI 1).
const MODIFY_TREE: u64 = 0x1ff0;
const REFER: u64 = 1 << 13;
const TRUNCATE: u64 = 1 << 14;
const IOCTL_DEV: u64 = 1 << 15;
/// The rights a rule on a file (not a directory) may carry.
const FILE_RIGHTS: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

/// `struct landlock_ruleset_attr` up to `scoped` (ABI 6); older kernels accept it zero-tailed.
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// `struct landlock_path_beneath_attr`, packed as in the kernel's uapi header.
#[repr(C, packed)]
struct PathBeneath {
    allowed_access: u64,
    parent_fd: i32,
}

/// The landlock ABI version the kernel offers, `None` without landlock.
pub fn abi() -> Option<u32> {
    // SAFETY: landlock_create_ruleset with a NULL attr, size 0 and the VERSION flag reads nothing.
    let ret =
        unsafe { libc::syscall(SYS_CREATE_RULESET, std::ptr::null::<RulesetAttr>(), 0usize, CREATE_RULESET_VERSION) };
    (ret > 0).then_some(ret as u32)
}

/// Every file-system right that ABI `abi` handles.
fn handled_fs(abi: u32) -> u64 {
    let mut rights = EXECUTE | WRITE_FILE | READ_FILE | READ_DIR | MODIFY_TREE;
    for (since, right) in [(2, REFER), (3, TRUNCATE), (5, IOCTL_DEV)] {
        if abi >= since {
            rights |= right;
        }
    }
    rights
}

pub(super) struct Prepared {
    ruleset: OwnedFd,
    abi: u32,
    /// Path, rights, and whether a missing path is skipped rather than a failure.
    rules: Vec<(CString, u64, bool)>,
}

impl Prepared {
    /// `dev_pts` says whether the root has `/dev/pts`; `None` (entering a running sandbox, whose
    /// root the caller does not describe) adds its rule only if it exists inside.
    pub fn new(rules: &LandlockRules, dev_pts: Option<bool>) -> io::Result<Prepared> {
        let abi = abi()
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "landlock: not available in this kernel"))?;
        let all = handled_fs(abi);
        let read_exec = EXECUTE | READ_FILE | READ_DIR;
        let mut planned: Vec<(&Path, u64, bool)> =
            vec![(Path::new("/proc"), READ_FILE | READ_DIR, false), (Path::new("/dev"), READ_FILE | READ_DIR, false)];
        for device in ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"] {
            if Path::new(device).exists() {
                planned.push((Path::new(device), READ_FILE | WRITE_FILE | (all & (TRUNCATE | IOCTL_DEV)), false));
            }
        }
        planned.push((Path::new("/dev/shm"), all, false));
        planned.push((Path::new("/tmp"), all, false));
        if dev_pts != Some(false) {
            planned.push((Path::new("/dev/pts"), all, dev_pts.is_none()));
        }
        planned.extend(rules.read_exec.iter().map(|p| (p.as_path(), read_exec, false)));
        planned.extend(rules.read_write.iter().map(|p| (p.as_path(), all, false)));
        let rules = planned
            .into_iter()
            .map(|(path, access, optional)| {
                if !path.is_absolute() {
                    return Err(invalid(format!("landlock path {} is not absolute", path.display())));
                }
                let c = CString::new(path.as_os_str().as_encoded_bytes())
                    .map_err(|_| invalid(format!("landlock path {} contains a NUL byte", path.display())))?;
                Ok((c, access, optional))
            })
            .collect::<io::Result<Vec<_>>>()?;

        let scoped = if abi >= 6 { SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL } else { 0 };
        let attr = RulesetAttr { handled_access_fs: all, handled_access_net: 0, scoped };
        // SAFETY: `attr` is valid for reads of the size passed; the call returns a new fd or -1.
        let fd = unsafe {
            libc::syscall(SYS_CREATE_RULESET, &attr as *const RulesetAttr, std::mem::size_of::<RulesetAttr>(), 0u32)
        };
        if fd < 0 {
            return Err(stage_error("landlock_create_ruleset", io::Error::last_os_error()));
        }
        // SAFETY: the kernel just returned this fd (close-on-exec by default); nothing else owns it.
        let ruleset = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(Prepared { ruleset, abi, rules })
    }

    pub fn abi(&self) -> u32 {
        self.abi
    }

    pub fn rule_path(&self, index: usize) -> Option<String> {
        self.rules.get(index).map(|(path, _, _)| path.to_string_lossy().into_owned())
    }

    /// In the child, once its root is the sandbox's (after `pivot_root`, or after `setns` into
    /// a running sandbox): adds a rule for each inside path (file rules keep only the rights a
    /// file can have).
    pub fn add_rules(&self) -> Result<(), Failure> {
        for (i, (path, access, optional)) in self.rules.iter().enumerate() {
            // SAFETY: open reads the NUL-terminated path and returns a new fd or -1.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
            // SAFETY: __errno_location returns this thread's errno slot.
            if fd < 0 && *optional && unsafe { *libc::__errno_location() } == libc::ENOENT {
                continue;
            }
            let fd = check(fd.into(), Stage::LandlockRule, i)? as i32;
            // SAFETY: an all-zero stat is a valid value; fstat writes it for the fd just opened;
            // the rule is read from this stack for the size of the packed struct; close takes the fd.
            let ret = unsafe {
                let mut st: libc::stat = std::mem::zeroed();
                let mut ret = libc::fstat(fd, &mut st).into();
                if ret == 0 {
                    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
                    let allowed_access = if is_dir { *access } else { access & FILE_RIGHTS };
                    let rule = PathBeneath { allowed_access, parent_fd: fd };
                    ret = libc::syscall(
                        SYS_ADD_RULE,
                        self.ruleset.as_raw_fd(),
                        RULE_PATH_BENEATH,
                        &rule as *const PathBeneath,
                        0u32,
                    );
                }
                libc::close(fd);
                ret
            };
            check(ret, Stage::LandlockRule, i)?;
        }
        Ok(())
    }

    /// In the program, after no_new_privs.
    pub fn restrict_self(&self) -> Result<(), Failure> {
        // SAFETY: landlock_restrict_self takes the ruleset fd and flags.
        let ret = unsafe { libc::syscall(SYS_RESTRICT_SELF, self.ruleset.as_raw_fd(), 0u32) };
        check(ret, Stage::LandlockRestrict, 0).map(drop)
    }
}
