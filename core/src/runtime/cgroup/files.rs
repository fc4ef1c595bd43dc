//! The file seam: every read, write, mkdir and rmdir of a cgroup control file goes through here, relative
//! to a directory, so the v1 and v2 code runs unchanged against a fake root (a temp dir whose control files
//! were created by the test) and against `/sys/fs/cgroup`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{CgroupError, Result};

/// How long to sleep between two polls of a control file.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

fn io_error(action: impl Into<String>, path: &Path, source: io::Error) -> CgroupError {
    CgroupError::Io { action: action.into(), path: path.to_path_buf(), source }
}

/// Whether the control file `name` exists in `dir` (the kernel lacks a feature when it does not).
pub(super) fn exists(dir: &Path, name: &str) -> bool {
    dir.join(name).exists()
}

/// The content of the control file `name` in `dir`.
pub(super) fn read(dir: &Path, name: &str) -> Result<String> {
    let path = dir.join(name);
    fs::read_to_string(&path).map_err(|e| io_error("reading", &path, e))
}

/// Writes `value` to the control file `name` in `dir` in one `write`, as the kernel wants. The file must
/// exist: a missing control file means a missing feature, which is an error, not something to create.
pub(super) fn write(dir: &Path, name: &str, value: &str) -> Result<()> {
    let path = dir.join(name);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| io_error(format!("opening {value:?} for"), &path, e))?;
    file.write_all(value.as_bytes()).map_err(|e| io_error(format!("writing {value:?} to"), &path, e))
}

/// A control file holding one number.
pub(super) fn read_u64(dir: &Path, name: &str) -> Result<u64> {
    let content = read(dir, name)?;
    content.trim().parse().map_err(|_| CgroupError::Parse { path: dir.join(name), content })
}

/// The value of `key` in a flat-keyed control file (`key value` lines: `cpu.stat`, `memory.events`,
/// `memory.oom_control`), or `None` when the kernel does not report that key.
pub(super) fn read_key(dir: &Path, name: &str, key: &str) -> Result<Option<u64>> {
    let content = read(dir, name)?;
    parse_key(&content, key).map_err(|()| CgroupError::Parse { path: dir.join(name), content: content.clone() })
}

fn parse_key(content: &str, key: &str) -> std::result::Result<Option<u64>, ()> {
    for line in content.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some(key) {
            return words.next().and_then(|v| v.parse().ok()).map(Some).ok_or(());
        }
    }
    Ok(None)
}

/// The pids listed in `cgroup.procs` of `dir`.
pub(super) fn read_pids(dir: &Path) -> Result<Vec<u32>> {
    let content = read(dir, "cgroup.procs")?;
    content
        .split_whitespace()
        .map(|pid| {
            pid.parse().map_err(|_| CgroupError::Parse { path: dir.join("cgroup.procs"), content: content.clone() })
        })
        .collect()
}

fn create_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir(dir)?;
    #[cfg(test)]
    fake::kernel_mkdir(dir);
    Ok(())
}

/// Creates the shared parent `dir` unless it is there already.
pub(super) fn make_parent(dir: &Path) -> Result<()> {
    match create_dir(dir) {
        Err(e) if !(e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir()) => {
            Err(io_error("creating directory", dir, e))
        }
        _ => Ok(()),
    }
}

/// Creates an agent's cgroup directory `dir`, fresh. One already there is a leftover of a crash: if it holds
/// no process it is removed and made again, so no counter (OOM kills, peaks) carries over to the new agent;
/// if it holds processes, another agent by that name is alive and the answer is [`CgroupError::Busy`].
pub(super) fn make_cgroup(dir: &Path) -> Result<()> {
    match create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {
            if !read_pids(dir)?.is_empty() {
                return Err(CgroupError::Busy { path: dir.to_path_buf() });
            }
            remove_dir(dir, Duration::ZERO)?;
            create_dir(dir).map_err(|e| io_error("creating directory", dir, e))
        }
        Err(e) => Err(io_error("creating directory", dir, e)),
        Ok(()) => Ok(()),
    }
}

/// Removes the cgroup directory `dir` and any child cgroups below it, deepest first, retrying for up to
/// `timeout` while the kernel says it is busy (processes still leaving). A directory already gone is fine.
pub(super) fn remove_dir(dir: &Path, timeout: Duration) -> Result<()> {
    let children = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
            .map(|entry| entry.path())
            .collect::<Vec<PathBuf>>(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("listing", dir, e)),
    };
    for child in children {
        remove_dir(&child, timeout)?;
    }
    #[cfg(test)]
    fake::kernel_rmdir(dir);
    let deadline = Instant::now() + timeout;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy && Instant::now() < deadline => {
                std::thread::sleep(POLL_INTERVAL)
            }
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {
                return Err(CgroupError::Busy { path: dir.to_path_buf() })
            }
            Err(e) => return Err(io_error("removing directory", dir, e)),
        }
    }
}

/// Polls `done` until it says yes, for up to `timeout`. Returns whether it did.
pub(super) fn poll_until(timeout: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if done()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
pub(super) mod fake {
    //! Fake cgroup roots: temp dirs holding the control files a kernel would. Like the kernel, a fake root
    //! fills a directory the code makes with the control files registered for it ([`on_mkdir`]), and lets the
    //! code rmdir a directory that holds only control files. The fake kernel is per test thread.

    use std::cell::RefCell;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// The fake kernel of one test thread.
    struct Kernel {
        /// Fake roots: only below them does rmdir delete control files.
        roots: Vec<PathBuf>,
        /// The files each directory gets when it is made.
        on_mkdir: Vec<(PathBuf, Vec<(String, String)>)>,
    }

    thread_local! {
        static KERNEL: RefCell<Kernel> = const { RefCell::new(Kernel { roots: Vec::new(), on_mkdir: Vec::new() }) };
    }

    /// Files the fake kernel puts in `dir` when the code makes it.
    pub fn on_mkdir(dir: &Path, files: &[(&str, &str)]) {
        let files = files.iter().map(|(n, c)| (n.to_string(), c.to_string())).collect();
        KERNEL.with(|k| k.borrow_mut().on_mkdir.push((dir.to_path_buf(), files)));
    }

    pub(in super::super) fn kernel_mkdir(dir: &Path) {
        let files = KERNEL.with(|k| k.borrow().on_mkdir.iter().rev().find(|(d, _)| d == dir).map(|(_, f)| f.clone()));
        for (name, content) in files.unwrap_or_default() {
            std::fs::write(dir.join(name), content).unwrap();
        }
    }

    pub(in super::super) fn kernel_rmdir(dir: &Path) {
        if !KERNEL.with(|k| k.borrow().roots.iter().any(|root| dir.starts_with(root))) {
            return;
        }
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_file()) && entry.file_name() != "cgroup.procs" {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        // Like EBUSY from the kernel: a fake cgroup that lists processes stays.
        let procs = dir.join("cgroup.procs");
        if std::fs::read_to_string(&procs).is_ok_and(|p| p.trim().is_empty()) {
            std::fs::remove_file(procs).unwrap();
        }
    }

    /// A fake root: a temp dir removed (with everything in it) on drop.
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("clove-cgroup-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            KERNEL.with(|k| k.borrow_mut().roots.push(path.clone()));
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Creates `dir` with each control file holding its initial content.
    pub fn populate(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
    }

    /// The content of a control file, trimmed.
    pub fn content(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap().trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_parse() {
        let stat = "usage_usec 1500\nuser_usec 1000\nnr_throttled 3\nthrottled_usec 700\n";
        assert_eq!(parse_key(stat, "usage_usec"), Ok(Some(1500)));
        assert_eq!(parse_key(stat, "throttled_usec"), Ok(Some(700)));
        assert_eq!(parse_key(stat, "oom_kill"), Ok(None));
        assert_eq!(parse_key("oom_kill lots\n", "oom_kill"), Err(()));
        assert_eq!(parse_key("oom_kill\n", "oom_kill"), Err(()));
    }

    #[test]
    fn write_replaces_and_never_creates() {
        let root = fake::TempDir::new("files");
        fake::populate(&root.0, &[("memory.max", "max\n")]);
        write(&root.0, "memory.max", "1048576").unwrap();
        assert_eq!(read_u64(&root.0, "memory.max").unwrap(), 1_048_576);
        let err = write(&root.0, "memory.swap.max", "0").unwrap_err();
        assert!(err.to_string().contains("memory.swap.max"), "{err}");
        assert!(!exists(&root.0, "memory.swap.max"));
    }

    #[test]
    fn bad_numbers_name_the_file() {
        let root = fake::TempDir::new("parse");
        fake::populate(&root.0, &[("pids.current", "many\n"), ("cgroup.procs", "12\n34\n")]);
        let err = read_u64(&root.0, "pids.current").unwrap_err();
        assert!(err.to_string().contains("pids.current"), "{err}");
        assert_eq!(read_pids(&root.0).unwrap(), vec![12, 34]);
    }
}
