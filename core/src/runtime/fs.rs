//! READ and WRITE: a path is checked by the policy as written, resolved one component at a time
//! from held directory descriptors (following each symlink by hand), checked again as resolved, and
//! the last component is opened with `O_NOFOLLOW`, so neither `..` nor a symlink leads outside what
//! the policy allows.

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use clove_sys::fs::{open_component, open_file, open_root, read_link, FileKind, OpenMode};

use super::{Result, RuntimeError};
use crate::policy::{AgentPolicy, Denial};
use crate::protocol::{ReadReply, ReadRequest, WriteReply, WriteRequest};

/// Symlinks followed in one resolution before giving up, as the kernel's own limit.
const MAX_SYMLINKS: usize = 40;

/// A path resolved down to its last component.
struct Resolved {
    dir: OwnedFd,
    name: String,
    /// The absolute path with every symlink replaced by its target.
    canonical: String,
}

/// Makes `path` absolute against `cwd`, without touching the filesystem.
fn absolute(path: &str, cwd: &Path) -> Result<String> {
    if path.is_empty() {
        return Err(RuntimeError::InvalidArgument("empty path".into()));
    }
    if path.starts_with('/') {
        return Ok(path.to_string());
    }
    let cwd = cwd.to_str().ok_or_else(|| RuntimeError::InvalidArgument("working directory is not UTF-8".into()))?;
    Ok(format!("{}/{path}", cwd.trim_end_matches('/')))
}

fn resolve(path: &str) -> io::Result<Resolved> {
    let mut pending: VecDeque<String> = path.split('/').filter(|c| !c.is_empty()).map(String::from).collect();
    let mut dirs: Vec<OwnedFd> = vec![open_root()?];
    let mut names: Vec<String> = Vec::new();
    let mut links = 0;
    let canonical = |names: &[String], last: &str| {
        format!("/{}", names.iter().map(String::as_str).chain([last]).collect::<Vec<_>>().join("/"))
    };
    loop {
        let Some(name) = pending.pop_front() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "path names a directory"));
        };
        if name == "." {
            continue;
        }
        if name == ".." {
            if dirs.len() > 1 {
                dirs.pop();
                names.pop();
            }
            continue;
        }
        let last = pending.is_empty();
        let dir = dirs.last().ok_or_else(|| io::Error::other("lost the root directory"))?;
        match open_component(dir.as_fd(), &name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && last => {
                let canonical = canonical(&names, &name);
                let dir = dirs.pop().ok_or_else(|| io::Error::other("lost the root directory"))?;
                return Ok(Resolved { dir, name, canonical });
            }
            Err(e) => return Err(e),
            Ok((link, FileKind::Symlink)) => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many levels of symbolic links"));
                }
                let target = read_link(link.as_fd())?;
                let target = target
                    .to_str()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "symlink target is not UTF-8"))?;
                if target.starts_with('/') {
                    dirs.truncate(1);
                    names.clear();
                }
                for component in target.split('/').filter(|c| !c.is_empty()).rev() {
                    pending.push_front(component.to_string());
                }
            }
            Ok((fd, FileKind::Directory)) if !last => {
                dirs.push(fd);
                names.push(name);
            }
            Ok(_) if last => {
                let canonical = canonical(&names, &name);
                let dir = dirs.pop().ok_or_else(|| io::Error::other("lost the root directory"))?;
                return Ok(Resolved { dir, name, canonical });
            }
            Ok(_) => return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{name} is not a directory"))),
        }
    }
}

/// The filesystem an agent's paths name.
pub(super) enum View<'a> {
    /// The host's, for an agent that runs on the host: relative paths start at `cwd`.
    Host { cwd: &'a Path },
    /// What a sandboxed agent sees: only its binds, under their inside names.
    Sandbox(&'a SandboxView),
}

/// A sandboxed agent's filesystem: each visible tree, where it is inside and on the host.
#[derive(Debug, Clone)]
pub(super) struct SandboxView {
    pub binds: Vec<ViewBind>,
    /// Its working directory inside.
    pub cwd: PathBuf,
    /// Who it is on the host: files the runtime writes for it are handed to it.
    pub owner: (u32, u32),
}

impl SandboxView {
    /// The host path of an existing file the agent names by `inside` (absolute), if the agent can see
    /// it: resolved on the host, it must stay inside the bind that shows it.
    pub fn to_host(&self, inside: &str) -> Option<PathBuf> {
        let inside = Path::new(inside);
        let bind = self
            .binds
            .iter()
            .filter(|b| inside.starts_with(&b.inside))
            .max_by_key(|b| b.inside.components().count())?;
        let host = bind.host.join(inside.strip_prefix(&bind.inside).ok()?);
        let resolved = std::fs::canonicalize(&host).ok()?;
        resolved.starts_with(std::fs::canonicalize(&bind.host).ok()?).then_some(resolved)
    }
}

#[derive(Debug, Clone)]
pub(super) struct ViewBind {
    pub inside: PathBuf,
    pub host: PathBuf,
    pub writable: bool,
}

/// Checks `path` as written and as resolved, and opens it. In a sandbox's view the path is
/// translated to the host through the bind that shows it, and what it resolves to must stay
/// within that bind: the runtime never reaches, on a sandboxed agent's behalf, anything the agent
/// could not reach itself.
fn open_checked(
    path: &str,
    view: &View<'_>,
    mode: OpenMode,
    check: impl Fn(&str) -> Result<(), crate::policy::Denial>,
) -> Result<std::fs::File> {
    let (path, host, bind) = match view {
        View::Host { cwd } => (absolute(path, cwd)?, None, None),
        View::Sandbox(sandbox) => {
            let inside = absolute(path, &sandbox.cwd)?;
            check(&inside)?;
            let bind = sandbox
                .binds
                .iter()
                .filter(|b| Path::new(&inside).starts_with(&b.inside))
                .max_by_key(|b| b.inside.components().count())
                .ok_or_else(|| Denial::NotVisible(inside.clone()))?;
            if mode != OpenMode::Read && !bind.writable {
                return Err(Denial::ReadOnlyInSandbox(inside).into());
            }
            let rest = Path::new(&inside).strip_prefix(&bind.inside).unwrap_or(Path::new(""));
            let host = bind.host.join(rest).display().to_string();
            (inside, Some(host), Some(bind))
        }
    };
    check(&path)?;
    let on_host = host.as_deref().unwrap_or(&path);
    let resolved = resolve(on_host).map_err(|e| RuntimeError::io(path.clone(), e))?;
    match bind {
        None if resolved.canonical != path => check(&resolved.canonical)?,
        None => {}
        Some(bind) => {
            // Symlinks are resolved on the host; where they lead must still be inside the bind.
            let root = std::fs::canonicalize(&bind.host).map_err(|e| RuntimeError::io(path.clone(), e))?;
            let rest =
                Path::new(&resolved.canonical).strip_prefix(&root).map_err(|_| Denial::NotVisible(path.clone()))?;
            check(&bind.inside.join(rest).display().to_string())?;
        }
    }
    open_file(resolved.dir.as_fd(), &resolved.name, mode).map_err(|e| RuntimeError::io(path, e))
}

/// READ, at most `cap` bytes per reply.
pub(super) fn read(policy: &AgentPolicy, view: &View<'_>, req: &ReadRequest, cap: u64) -> Result<ReadReply> {
    let mut file = open_checked(&req.path, view, OpenMode::Read, |p| policy.check_read(p))?;
    let size = file.metadata().map_err(|e| RuntimeError::io(req.path.clone(), e))?.len();
    let wanted = req.max_bytes.unwrap_or(size.saturating_sub(req.offset));
    if wanted > cap {
        return Err(RuntimeError::LimitExceeded(format!(
            "{} has {size} bytes from offset {}, more than the {cap} a reply carries: read it in windows with max_bytes",
            req.path, req.offset
        )));
    }
    file.seek(SeekFrom::Start(req.offset)).map_err(|e| RuntimeError::io(req.path.clone(), e))?;
    let mut content = Vec::new();
    file.take(wanted).read_to_end(&mut content).map_err(|e| RuntimeError::io(req.path.clone(), e))?;
    Ok(ReadReply { content, size })
}

/// WRITE (truncate or append), creating the file if missing.
pub(super) fn write(policy: &AgentPolicy, view: &View<'_>, req: &WriteRequest) -> Result<WriteReply> {
    let mode = OpenMode::Write { append: req.append };
    let mut file = open_checked(&req.path, view, mode, |p| policy.check_write(p))?;
    if let View::Sandbox(sandbox) = view {
        // Written by the runtime, the file is still the agent's to change.
        let (uid, gid) = sandbox.owner;
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|e| RuntimeError::io(req.path.clone(), e))?;
    }
    file.write_all(&req.content).map_err(|e| RuntimeError::io(req.path.clone(), e))?;
    Ok(WriteReply { bytes_written: req.content.len() as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Level;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("clove-fs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn policy_for(root: &Path) -> AgentPolicy {
        let mut p = AgentPolicy::at_level(Level::Standard, "/nonexistent-home");
        let glob = format!("{}/**", root.display());
        for perms in [&mut p.current, &mut p.ceiling] {
            perms.filesystem.read = vec![glob.clone()];
            perms.filesystem.write = vec![glob.clone()];
        }
        p
    }

    #[test]
    fn binary_round_trip_and_append() {
        let root = scratch("rt");
        let p = policy_for(&root);
        let bytes: Vec<u8> = (0..=255).collect();
        let path = root.join("b.bin").display().to_string();
        write(
            &p,
            &View::Host { cwd: &root },
            &WriteRequest { path: path.clone(), content: bytes.clone(), append: false },
        )
        .unwrap();
        write(&p, &View::Host { cwd: &root }, &WriteRequest { path: "b.bin".into(), content: vec![7], append: true })
            .unwrap();
        let got =
            read(&p, &View::Host { cwd: &root }, &ReadRequest { path, offset: 0, max_bytes: None }, 1 << 20).unwrap();
        assert_eq!(&got.content[..256], &bytes[..]);
        assert_eq!(got.content[256], 7);
        let window = read(
            &p,
            &View::Host { cwd: &root },
            &ReadRequest { path: "b.bin".into(), offset: 10, max_bytes: Some(3) },
            1 << 20,
        )
        .unwrap();
        assert_eq!((window.content, window.size), (vec![10, 11, 12], 257));
    }

    #[test]
    fn dotdot_and_symlinks_out_of_the_tree_are_denied() {
        let root = scratch("esc");
        let outside = scratch("esc-out");
        std::fs::write(outside.join("secret"), "s").unwrap();
        let p = policy_for(&root);
        let dotdot = format!("{}/../{}/secret", root.display(), outside.file_name().unwrap().to_str().unwrap());
        let err = read(&p, &View::Host { cwd: &root }, &ReadRequest { path: dotdot, ..Default::default() }, 1 << 20)
            .unwrap_err();
        assert_eq!(err.code(), crate::protocol::ErrorCode::PermissionDenied, "{err}");

        std::os::unix::fs::symlink(outside.join("secret"), root.join("link")).unwrap();
        let err =
            read(&p, &View::Host { cwd: &root }, &ReadRequest { path: "link".into(), ..Default::default() }, 1 << 20)
                .unwrap_err();
        assert_eq!(err.code(), crate::protocol::ErrorCode::PermissionDenied, "{err}");

        std::os::unix::fs::symlink(&outside, root.join("dirlink")).unwrap();
        let err = write(
            &p,
            &View::Host { cwd: &root },
            &WriteRequest { path: "dirlink/new".into(), content: b"x".to_vec(), append: false },
        )
        .unwrap_err();
        assert_eq!(err.code(), crate::protocol::ErrorCode::PermissionDenied, "{err}");
        assert!(!outside.join("new").exists());

        // A symlink that stays inside the tree is followed.
        std::fs::write(root.join("real"), "r").unwrap();
        std::os::unix::fs::symlink("real", root.join("inner")).unwrap();
        let ok =
            read(&p, &View::Host { cwd: &root }, &ReadRequest { path: "inner".into(), ..Default::default() }, 1 << 20)
                .unwrap();
        assert_eq!(ok.content, b"r");
    }

    #[test]
    fn a_sandbox_view_reaches_only_its_binds() {
        // Only root may hand a file to another user; others hand it to themselves.
        let owner = match clove_sys::current_uid() {
            0 => (4242, 4243),
            uid => (uid, clove_sys::current_gid()),
        };
        let work = scratch("view-work");
        let data = scratch("view-data");
        std::fs::write(data.join("in"), "ro").unwrap();
        let view = SandboxView {
            binds: vec![
                ViewBind { inside: "/work".into(), host: work.clone(), writable: true },
                ViewBind { inside: "/data".into(), host: data.clone(), writable: false },
            ],
            cwd: "/work".into(),
            owner,
        };
        let view = View::Sandbox(&view);
        let p = AgentPolicy::at_level(Level::Unrestricted, "/nonexistent-home");
        let write =
            |path: &str| write(&p, &view, &WriteRequest { path: path.into(), content: b"x".to_vec(), append: false });
        let read = |path: &str| read(&p, &view, &ReadRequest { path: path.into(), ..Default::default() }, 1 << 20);
        write("note").unwrap();
        assert_eq!(std::fs::read(work.join("note")).unwrap(), b"x", "relative to /work, on the host's work dir");
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(work.join("note")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), owner, "handed to the agent");
        assert_eq!(read("/data/in").unwrap().content, b"ro");
        let denied = |e: RuntimeError| e.code() == crate::protocol::ErrorCode::PermissionDenied;
        assert!(denied(write("/data/new").unwrap_err()), "read-only bind");
        assert!(denied(read("/etc/hostname").unwrap_err()), "not visible");
        assert!(denied(write("/tmp/escape").unwrap_err()), "not visible");
        // Even an unrestricted agent's symlink cannot lead the runtime out of the bind.
        std::os::unix::fs::symlink("/etc/hostname", work.join("out")).unwrap();
        assert!(denied(read("/work/out").unwrap_err()), "symlink out of the bind");
        std::os::unix::fs::symlink(&data, work.join("to-data")).unwrap();
        assert!(denied(read("to-data/in").unwrap_err()), "symlink into another bind's host path");
    }

    #[test]
    fn fifos_and_oversized_reads_are_refused() {
        let root = scratch("fifo");
        let p = policy_for(&root);
        assert!(std::process::Command::new("mkfifo").arg(root.join("f")).status().unwrap().success());
        let err =
            read(&p, &View::Host { cwd: &root }, &ReadRequest { path: "f".into(), ..Default::default() }, 1 << 20)
                .unwrap_err();
        assert_eq!(err.code(), crate::protocol::ErrorCode::Io, "{err}");
        std::fs::write(root.join("big"), vec![0u8; 100]).unwrap();
        let err = read(&p, &View::Host { cwd: &root }, &ReadRequest { path: "big".into(), ..Default::default() }, 50)
            .unwrap_err();
        assert_eq!(err.code(), crate::protocol::ErrorCode::LimitExceeded, "{err}");
    }
}
