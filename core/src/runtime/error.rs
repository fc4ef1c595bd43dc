//! Errors of the runtime, each with the [`ErrorCode`] an agent or a C host sees.

use std::io;

use super::cgroup::CgroupError;
use super::vm::VmTierError;
use crate::policy::Denial;
use crate::protocol::{ErrorCode, ErrorReply, Opcode};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Denied(#[from] Denial),
    #[error("not admitted: {0}")]
    NotAdmitted(&'static str),
    #[error("agent {0} not found")]
    NotFound(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("malformed {0}")]
    BadPayload(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("sandbox: {0}")]
    Sandbox(String),
    #[error(transparent)]
    Vm(#[from] super::vm::VmTierError),
    #[error(transparent)]
    Net(#[from] super::net::NetError),
    #[error("cgroup: {0}")]
    Cgroup(#[from] super::cgroup::CgroupError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Store(#[from] super::StoreError),
    #[error("opcode {} (0x{:02x}) is not served by this runtime yet", .0.name(), *.0 as u8)]
    Unsupported(Opcode),
    #[error("the runtime has stopped")]
    Stopped,
    #[error("internal error: {0}")]
    Internal(String),
}

impl RuntimeError {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        RuntimeError::Io { context: context.into(), source }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            RuntimeError::Denied(Denial::Invalid(_) | Denial::CommandSyntax(_)) => ErrorCode::InvalidArgument,
            RuntimeError::Denied(_) | RuntimeError::NotAdmitted(_) => ErrorCode::PermissionDenied,
            RuntimeError::NotFound(_) => ErrorCode::NotFound,
            RuntimeError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            RuntimeError::BadPayload(_) => ErrorCode::BadPayload,
            RuntimeError::Conflict(_) => ErrorCode::Conflict,
            RuntimeError::Timeout(_) => ErrorCode::Timeout,
            RuntimeError::LimitExceeded(_) => ErrorCode::LimitExceeded,
            RuntimeError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => ErrorCode::NotFound,
            RuntimeError::Io { .. } => ErrorCode::Io,
            RuntimeError::Unsupported(_) => ErrorCode::Unsupported,
            RuntimeError::Sandbox(_) => ErrorCode::Io,
            RuntimeError::Vm(e) => match e {
                VmTierError::NoKvm(_) | VmTierError::SoftwareKvm | VmTierError::NoImage(_) | VmTierError::Limits => {
                    ErrorCode::Unsupported
                }
                VmTierError::Image { .. } | VmTierError::Vmm(_) => ErrorCode::Io,
            },
            RuntimeError::Net(e) => e.code(),
            RuntimeError::Cgroup(e) => match e {
                CgroupError::Busy { .. } => ErrorCode::Conflict,
                CgroupError::Timeout { .. } => ErrorCode::Timeout,
                CgroupError::MissingControllers { .. }
                | CgroupError::NotMounted { .. }
                | CgroupError::ThreadsNeedV1 => ErrorCode::Unsupported,
                CgroupError::InvalidName(_) => ErrorCode::InvalidArgument,
                CgroupError::Parse { .. } | CgroupError::Io { .. } => ErrorCode::Io,
            },
            RuntimeError::State(e) if e.is_invalid() => ErrorCode::InvalidArgument,
            RuntimeError::State(_) => ErrorCode::LimitExceeded,
            RuntimeError::Store(_) => ErrorCode::Io,
            RuntimeError::Stopped | RuntimeError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The error as an agent receives it.
    pub fn to_reply(&self) -> ErrorReply {
        ErrorReply { code: self.code() as u16, message: self.to_string() }
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
