//! The optional listening socket for agents the runtime did not start: mode 0600, its directory
//! created 0700 when missing, and every peer's credentials read before it is served.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;

use mio::net::{UnixListener, UnixStream};

use super::{ListenConfig, Result, RuntimeError};

pub(super) struct Listener {
    pub socket: UnixListener,
    pub config: ListenConfig,
}

impl Listener {
    pub fn bind(config: ListenConfig) -> Result<Listener> {
        let path = &config.path;
        let context = |what: &str| format!("{what} {}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| RuntimeError::io(context("creating the directory of"), e))?;
        }
        remove_stale(path)?;
        let socket = UnixListener::bind(path).map_err(|e| RuntimeError::io(context("binding"), e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| RuntimeError::io(context("restricting"), e))?;
        Ok(Listener { socket, config })
    }

    /// The next pending connection, if any.
    pub fn accept(&self) -> io::Result<Option<UnixStream>> {
        match self.socket.accept() {
            Ok((stream, _)) => Ok(Some(stream)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether a peer with this uid is served without a token.
    pub fn admits_uid(&self, uid: u32) -> bool {
        self.config.allowed_uids.contains(&uid)
    }

    pub fn remove_socket_file(&self) {
        let _ = std::fs::remove_file(&self.config.path);
    }
}

/// Removes a socket file nobody listens on; refuses to touch anything else.
fn remove_stale(path: &Path) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(RuntimeError::Conflict(format!("{} exists and is not a socket", path.display())));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(RuntimeError::Conflict(format!("{} is in use by another runtime", path.display())));
    }
    std::fs::remove_file(path).map_err(|e| RuntimeError::io(format!("removing stale socket {}", path.display()), e))
}
