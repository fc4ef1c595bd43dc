//! READ and WRITE inside the guest. The VM is the sandbox, so there is no path policy here; what is
//! kept from the process tier is its shape: relative paths start at the caller's working directory,
//! a READ reply never exceeds the frame cap, and only regular files are read or written (a FIFO
//! would block the connection forever).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clove_core::protocol::{ErrorCode, ReadReply, ReadRequest, WriteReply, WriteRequest};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("invalid argument: empty path")]
    EmptyPath,
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path} is not a regular file")]
    NotRegular { path: String },
    #[error("{path} has {size} bytes from offset {offset}, more than the {cap} a reply carries: read it in windows with max_bytes")]
    TooBig { path: String, size: u64, offset: u64, cap: u64 },
}

impl FileError {
    /// The code the process tier gives the same failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            FileError::EmptyPath => ErrorCode::InvalidArgument,
            FileError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => ErrorCode::NotFound,
            FileError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                ErrorCode::PermissionDenied
            }
            FileError::Io { .. } | FileError::NotRegular { .. } => ErrorCode::Io,
            FileError::TooBig { .. } => ErrorCode::LimitExceeded,
        }
    }
}

fn resolve(path: &str, cwd: &Path) -> Result<PathBuf, FileError> {
    if path.is_empty() {
        return Err(FileError::EmptyPath);
    }
    Ok(cwd.join(path))
}

/// Opens without blocking on a FIFO or device, and refuses anything but a regular file.
fn open(path: &str, cwd: &Path, options: &mut OpenOptions) -> Result<File, FileError> {
    let io = |source| FileError::Io { path: path.to_string(), source };
    let file = options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(resolve(path, cwd)?).map_err(io)?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(FileError::NotRegular { path: path.to_string() });
    }
    Ok(file)
}

/// READ, at most `cap` bytes of content.
pub fn read(req: &ReadRequest, cwd: &Path, cap: u64) -> Result<ReadReply, FileError> {
    let io = |source| FileError::Io { path: req.path.clone(), source };
    let mut file = open(&req.path, cwd, OpenOptions::new().read(true))?;
    let size = file.metadata().map_err(io)?.len();
    let wanted = req.max_bytes.unwrap_or(size.saturating_sub(req.offset));
    if wanted > cap {
        return Err(FileError::TooBig { path: req.path.clone(), size, offset: req.offset, cap });
    }
    file.seek(SeekFrom::Start(req.offset)).map_err(io)?;
    let mut content = Vec::new();
    file.take(wanted).read_to_end(&mut content).map_err(io)?;
    Ok(ReadReply { content, size })
}

/// WRITE: truncate or append, creating the file if missing.
pub fn write(req: &WriteRequest, cwd: &Path) -> Result<WriteReply, FileError> {
    let mut options = OpenOptions::new();
    options.create(true).mode(0o644);
    if req.append {
        options.append(true);
    } else {
        // Truncated only once it is known to be a regular file, unlike O_TRUNC at open.
        options.write(true);
    }
    let mut file = open(&req.path, cwd, &mut options)?;
    let io = |source| FileError::Io { path: req.path.clone(), source };
    if !req.append {
        file.set_len(0).map_err(io)?;
    }
    file.write_all(&req.content).map_err(io)?;
    Ok(WriteReply { bytes_written: req.content.len() as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("clove-guest-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn write_append_and_windowed_read() {
        let dir = scratch("rw");
        let w = |content: &[u8], append| {
            write(&WriteRequest { path: "f".into(), content: content.to_vec(), append }, &dir).unwrap()
        };
        assert_eq!(w(b"hello world, long", false).bytes_written, 17);
        w(b"abc", false);
        w(b"de", true);
        let all = read(&ReadRequest { path: "f".into(), offset: 0, max_bytes: None }, &dir, 1 << 20).unwrap();
        assert_eq!((all.content.as_slice(), all.size), (&b"abcde"[..], 5), "truncated, then appended");
        let window = read(&ReadRequest { path: "f".into(), offset: 1, max_bytes: Some(2) }, &dir, 1 << 20).unwrap();
        assert_eq!(window.content, b"bc");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_carry_the_process_tiers_codes() {
        let dir = scratch("err");
        let req = |path: &str| ReadRequest { path: path.into(), offset: 0, max_bytes: None };
        assert_eq!(read(&req("missing"), &dir, 1 << 20).unwrap_err().code(), ErrorCode::NotFound);
        assert_eq!(read(&req(""), &dir, 1 << 20).unwrap_err().code(), ErrorCode::InvalidArgument);
        std::fs::write(dir.join("big"), [0u8; 100]).unwrap();
        assert_eq!(read(&req("big"), &dir, 50).unwrap_err().code(), ErrorCode::LimitExceeded);
        assert!(std::process::Command::new("mkfifo").arg(dir.join("fifo")).status().unwrap().success());
        assert_eq!(read(&req("fifo"), &dir, 1 << 20).unwrap_err().code(), ErrorCode::Io, "no hang on a FIFO");
        assert_eq!(read(&req("."), &dir, 1 << 20).unwrap_err().code(), ErrorCode::Io, "a directory");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
