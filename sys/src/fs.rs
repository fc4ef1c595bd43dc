//! Descriptor-relative file access, for resolving paths one component at a time without following a
//! symlink the caller has not checked.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use crate::cvt;

/// What a path component turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    Symlink,
    Regular,
    Other,
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn kind_of(fd: BorrowedFd<'_>) -> io::Result<FileKind> {
    // SAFETY: an all-zero `stat` is a valid value of a plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open for the call and `st` is valid for writes.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => FileKind::Directory,
        libc::S_IFLNK => FileKind::Symlink,
        libc::S_IFREG => FileKind::Regular,
        _ => FileKind::Other,
    })
}

fn openat(dir: BorrowedFd<'_>, name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let name = c_name(name)?;
    // SAFETY: `dir` is open for the call and `name` is a NUL-terminated string that outlives it.
    let fd = cvt(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the root directory as a path-only descriptor.
pub fn open_root() -> io::Result<OwnedFd> {
    let root = c_name("/")?;
    // SAFETY: `root` is NUL-terminated and outlives the call.
    let fd = cvt(unsafe { libc::open(root.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens one component under `dir` without following it if it is a symlink, and says what it is.
pub fn open_component(dir: BorrowedFd<'_>, name: &str) -> io::Result<(OwnedFd, FileKind)> {
    let fd = openat(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
    let kind = {
        use std::os::fd::AsFd;
        kind_of(fd.as_fd())?
    };
    Ok((fd, kind))
}

/// The target of a symlink opened with [`open_component`].
pub fn read_link(link: BorrowedFd<'_>) -> io::Result<OsString> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    let empty = c_name("")?;
    // SAFETY: `link` is an O_PATH fd of a symlink, which readlinkat accepts with an empty path; `buf`
    // is valid for `buf.len()` bytes of writes.
    let n = unsafe { libc::readlinkat(link.as_raw_fd(), empty.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(OsString::from_vec(buf))
}

/// How [`open_file`] opens the last component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    Read,
    /// Create if missing (mode 0644), then truncate or append.
    Write {
        append: bool,
    },
}

/// Opens a regular file `name` under `dir`, refusing a symlink in its place (`O_NOFOLLOW`) and
/// anything that is not a regular file (a FIFO or a device could block or never end).
pub fn open_file(dir: BorrowedFd<'_>, name: &str, mode: OpenMode) -> io::Result<File> {
    let flags = match mode {
        OpenMode::Read => libc::O_RDONLY,
        OpenMode::Write { append: false } => libc::O_WRONLY | libc::O_CREAT,
        OpenMode::Write { append: true } => libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
    };
    let fd = openat(dir, name, flags | libc::O_NOFOLLOW | libc::O_NONBLOCK, 0o644)?;
    let file = File::from(fd);
    {
        use std::os::fd::AsFd;
        if kind_of(file.as_fd())? != FileKind::Regular {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
    }
    if mode == (OpenMode::Write { append: false }) {
        // Truncate only after the type check, so a device is never truncated.
        file.set_len(0)?;
    }
    Ok(file)
}
