//! The sandbox's root: planned in the parent as a list of steps, built in the child.
//!
//! Bind sources are cloned with `open_tree` while init still has the spawner's host uid (so they
//! resolve with the spawner's permissions), and made read-only, nosuid and nodev with
//! `mount_setattr(AT_RECURSIVE)`, which covers their submounts and keeps any flag the host locked.
//! The root is a tmpfs mounted over `/tmp` of the new mount namespace; once built it becomes `/`
//! by `pivot_root(".", ".")` and the host's tree, stacked under it, is detached.

use std::collections::HashSet;
use std::ffi::{c_ulong, CString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::failure::{check, Failure, Stage};
use super::{invalid, RootFs};

const OPEN_TREE_CLONE: u32 = 1;
const OPEN_TREE_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Device nodes bound from the host's `/dev` when it has them.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// A host tree to bind, and the detached copy of it once the child has cloned it.
struct Tree {
    source: CString,
    attributes: u64,
    fd: RawFd,
}

enum Step {
    /// A directory to mount on (an existing one is fine).
    Dir(CString),
    /// An empty file to bind a file on.
    File(CString),
    Bind {
        tree: usize,
        target: CString,
    },
    Tmpfs {
        target: CString,
        flags: c_ulong,
        data: CString,
    },
    Proc(CString),
    Devpts(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    ReadOnly(CString),
}

impl Step {
    fn path(&self) -> &CString {
        match self {
            Step::Dir(path) | Step::File(path) | Step::Proc(path) | Step::Devpts(path) | Step::ReadOnly(path) => path,
            Step::Bind { target, .. } | Step::Tmpfs { target, .. } => target,
            Step::Symlink { link, .. } => link,
        }
    }
}

pub(super) struct MountPlan {
    trees: Vec<Tree>,
    /// Paths relative to the new root, run in order with the new root as working directory.
    steps: Vec<Step>,
    dirs: HashSet<PathBuf>,
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| invalid(format!("{} contains a NUL byte", path.display())))
}

fn c_str(s: &str) -> CString {
    // INVARIANT: only called with literals and formatted numbers, which have no NUL byte.
    CString::new(s).unwrap_or_default()
}

impl MountPlan {
    /// Plans `/proc` (when the sandbox has its own pid namespace), `/dev`, `/tmp`, then the binds.
    pub fn new(root: &RootFs, proc: bool) -> io::Result<MountPlan> {
        if root.tmp_size == 0 || root.shm_size == 0 {
            return Err(invalid("tmpfs sizes must not be 0 (which tmpfs reads as unlimited)".into()));
        }
        let mut plan = MountPlan { trees: Vec::new(), steps: Vec::new(), dirs: HashSet::new() };
        if proc {
            plan.dir(Path::new("proc"));
            plan.steps.push(Step::Proc(c_str("proc")));
        }
        plan.dir(Path::new("dev"));
        let dev_data = c_str("mode=0755,size=64k,nr_inodes=64");
        let dev_flags = libc::MS_NOSUID | libc::MS_NOEXEC;
        plan.steps.push(Step::Tmpfs { target: c_str("dev"), flags: dev_flags, data: dev_data });
        for device in DEVICES {
            let host = Path::new("/dev").join(device);
            if host.exists() {
                plan.bind(&host, &Path::new("dev").join(device), false, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)?;
            }
        }
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            plan.steps.push(Step::Symlink { target: c_str(target), link: c_str(&format!("dev/{link}")) });
        }
        let private = libc::MS_NOSUID | libc::MS_NODEV;
        plan.dir(Path::new("dev/shm"));
        let shm_data = c_str(&format!("mode=1777,size={}", root.shm_size));
        plan.steps.push(Step::Tmpfs { target: c_str("dev/shm"), flags: private, data: shm_data });
        if root.dev_pts {
            plan.dir(Path::new("dev/pts"));
            plan.steps.push(Step::Devpts(c_str("dev/pts")));
            plan.steps.push(Step::Symlink { target: c_str("pts/ptmx"), link: c_str("dev/ptmx") });
        }
        plan.dir(Path::new("tmp"));
        let tmp_data = c_str(&format!("mode=1777,size={}", root.tmp_size));
        plan.steps.push(Step::Tmpfs { target: c_str("tmp"), flags: private, data: tmp_data });
        for bind in &root.binds {
            let target = relative(&bind.target)?;
            let attributes = if bind.writable { 0 } else { MOUNT_ATTR_RDONLY } | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
            plan.bind(&bind.source, &target, true, attributes)?;
        }
        plan.steps.push(Step::ReadOnly(c_str("dev")));
        plan.steps.push(Step::ReadOnly(c_str(".")));
        Ok(plan)
    }

    /// Plans the directories leading to `path` and `path` itself, once each.
    fn dir(&mut self, path: &Path) {
        let mut prefix = PathBuf::new();
        for component in path.components() {
            prefix.push(component);
            if self.dirs.insert(prefix.clone()) {
                // Paths built here come from checked `Path`s without NUL bytes.
                if let Ok(c) = c_path(&prefix) {
                    self.steps.push(Step::Dir(c));
                }
            }
        }
    }

    fn bind(&mut self, source: &Path, target: &Path, user: bool, attributes: u64) -> io::Result<()> {
        if user && !source.is_absolute() {
            return Err(invalid(format!("bind source {} is not absolute", source.display())));
        }
        let metadata =
            std::fs::metadata(source).map_err(|e| invalid(format!("bind source {}: {e}", source.display())))?;
        if metadata.is_dir() {
            self.dir(target);
        } else {
            if let Some(parent) = target.parent() {
                self.dir(parent);
            }
            self.steps.push(Step::File(c_path(target)?));
        }
        self.trees.push(Tree { source: c_path(source)?, attributes, fd: -1 });
        self.steps.push(Step::Bind { tree: self.trees.len() - 1, target: c_path(target)? });
        Ok(())
    }

    pub fn tree_source(&self, index: usize) -> Option<String> {
        self.trees.get(index).map(|t| t.source.to_string_lossy().into_owned())
    }

    pub fn step_target(&self, index: usize) -> Option<String> {
        self.steps.get(index).map(|s| format!("/{}", s.path().to_string_lossy().trim_start_matches('.')))
    }

    /// In the child: clones every bind source into a detached tree and sets its attributes.
    pub fn open_trees(&mut self) -> Result<(), Failure> {
        let empty = c"";
        for (i, tree) in self.trees.iter_mut().enumerate() {
            let flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as u32;
            // SAFETY: open_tree reads the NUL-terminated source path and returns a new fd or -1.
            let fd = check(
                unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, tree.source.as_ptr(), flags) },
                Stage::OpenTree,
                i,
            )?;
            tree.fd = fd as RawFd;
            let attr = MountAttr { attr_set: tree.attributes, attr_clr: 0, propagation: 0, userns_fd: 0 };
            let at = (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as u32;
            // SAFETY: mount_setattr on the tree fd just opened, reading `attr` of the size passed.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_mount_setattr,
                    tree.fd,
                    empty.as_ptr(),
                    at,
                    &attr as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                )
            };
            check(ret, Stage::SetMountAttributes, i)?;
        }
        Ok(())
    }

    /// In the child, after [`make_private`] and [`MountPlan::open_trees`]: builds the root and
    /// pivots into it, leaving the working directory at the new `/`.
    pub fn build_root(&self) -> Result<(), Failure> {
        // SAFETY: mount and chdir read NUL-terminated literals.
        unsafe {
            let flags = libc::MS_NOSUID | libc::MS_NODEV;
            let data = c"mode=0755,size=1m";
            check(
                libc::mount(c"tmpfs".as_ptr(), c"/tmp".as_ptr(), c"tmpfs".as_ptr(), flags, data.as_ptr().cast()).into(),
                Stage::RootTmpfs,
                0,
            )?;
            check(libc::chdir(c"/tmp".as_ptr()).into(), Stage::RootTmpfs, 0)?;
        }
        for (i, step) in self.steps.iter().enumerate() {
            check(self.run(step), Stage::Mount, i)?;
        }
        // SAFETY: pivot_root, umount2 and chdir read NUL-terminated literals.
        unsafe {
            let here = c".";
            check(libc::syscall(libc::SYS_pivot_root, here.as_ptr(), here.as_ptr()), Stage::PivotRoot, 0)?;
            // The host's root now sits on top of ours at "/": detach it with everything under it.
            check(libc::umount2(here.as_ptr(), libc::MNT_DETACH).into(), Stage::DetachOldRoot, 0)?;
            check(libc::chdir(c"/".as_ptr()).into(), Stage::DetachOldRoot, 0)?;
        }
        Ok(())
    }

    fn run(&self, step: &Step) -> libc::c_long {
        let none = std::ptr::null::<libc::c_char>();
        // SAFETY: every path is a NUL-terminated string of the plan; the tree fds were opened by
        // `open_trees` (a Bind step names an index that `bind` pushed); `attr` outlives the call.
        unsafe {
            match step {
                Step::Dir(path) => match libc::mkdir(path.as_ptr(), 0o755) {
                    -1 if *libc::__errno_location() == libc::EEXIST => 0,
                    ret => ret.into(),
                },
                Step::File(path) => {
                    let fd = libc::open(
                        path.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                        0o644,
                    );
                    if fd >= 0 {
                        libc::close(fd);
                    }
                    fd.into()
                }
                Step::Bind { tree, target } => {
                    let fd = self.trees.get(*tree).map_or(-1, |t| t.fd);
                    let ret = libc::syscall(
                        libc::SYS_move_mount,
                        fd,
                        c"".as_ptr(),
                        libc::AT_FDCWD,
                        target.as_ptr(),
                        MOVE_MOUNT_F_EMPTY_PATH,
                    );
                    libc::close(fd);
                    ret
                }
                Step::Tmpfs { target, flags, data } => {
                    libc::mount(c"tmpfs".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), *flags, data.as_ptr().cast())
                        .into()
                }
                Step::Proc(target) => {
                    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
                    libc::mount(c"proc".as_ptr(), target.as_ptr(), c"proc".as_ptr(), flags, none.cast()).into()
                }
                Step::Devpts(target) => {
                    let flags = libc::MS_NOSUID | libc::MS_NOEXEC;
                    let data = c"newinstance,ptmxmode=0666,mode=0620";
                    libc::mount(c"devpts".as_ptr(), target.as_ptr(), c"devpts".as_ptr(), flags, data.as_ptr().cast())
                        .into()
                }
                Step::Symlink { target, link } => libc::symlink(target.as_ptr(), link.as_ptr()).into(),
                Step::ReadOnly(path) => {
                    let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
                    libc::syscall(
                        libc::SYS_mount_setattr,
                        libc::AT_FDCWD,
                        path.as_ptr(),
                        0u32,
                        &attr as *const MountAttr,
                        std::mem::size_of::<MountAttr>(),
                    )
                }
            }
        }
    }
}

/// In the child: stops mount events from crossing between the host and the sandbox.
pub(super) fn make_private() -> Result<(), Failure> {
    let none = std::ptr::null::<libc::c_char>();
    // SAFETY: mount with MS_REC|MS_PRIVATE on "/" reads only the NUL-terminated literal.
    let ret = unsafe { libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, none.cast()) };
    check(ret.into(), Stage::MakePrivate, 0).map(drop)
}

/// `path` (absolute, without `..`) relative to the root.
fn relative(path: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(name) => out.push(name),
            _ => return Err(invalid(format!("sandbox path {} must be absolute, without . or ..", path.display()))),
        }
    }
    if !path.is_absolute() || out.as_os_str().is_empty() {
        return Err(invalid(format!("sandbox path {} must be absolute and not /", path.display())));
    }
    Ok(out)
}
