//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while creating, inspecting or removing clusters.
///
/// Messages are one line, lower-case, and end with the fix when there is one, so the binary
/// prints them as they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No container engine answers on the socket.
    #[error(
        "cannot reach the Docker engine at {endpoint}: {reason}; start it (`sudo systemctl start \
         docker`, or `sudo dockerd &` where there is no systemd) or point DOCKER_HOST at it"
    )]
    EngineUnreachable { endpoint: String, reason: String },

    /// The engine answered with an error.
    #[error("docker: cannot {operation}: {message}")]
    Engine { operation: String, message: String },

    /// A command run inside a node container failed.
    #[error("on node {node}: `{command}` exited with {code}: {output}")]
    NodeCommand {
        node: String,
        command: String,
        code: i64,
        output: String,
    },

    /// A cluster of that name already exists.
    #[error(
        "a cluster named {name:?} already exists; pick another --name, or remove it first with \
         `kubelab down {name}`"
    )]
    ClusterExists { name: String },

    /// No cluster of that name.
    #[error("no cluster named {name:?}; `kubelab list` shows the existing ones")]
    ClusterNotFound { name: String },

    /// A container, network or volume of that name exists but was not made by kubelab.
    #[error(
        "the {kind} name {name:?} is taken by something kubelab did not create; remove it or \
         pick another cluster --name"
    )]
    NameTaken { kind: &'static str, name: String },

    /// A host port asked for is already bound.
    #[error("host port {address} is already in use; pick another port (or stop what uses it)")]
    PortInUse { address: String },

    /// The node image is absent and cannot be built here.
    #[error("node image {image} is missing and cannot be built: {reason}")]
    ImageMissing { image: String, reason: String },

    /// Building the node image failed.
    #[error("cannot build the node image: {0}")]
    ImageBuild(String),

    /// A file-system operation failed (the I/O error is in the message, not a source, so the
    /// binary's `{:#}` does not print it twice).
    #[error("cannot {operation} {}: {error}", path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },

    /// A host command (debootstrap, tar, ...) failed.
    #[error("`{command}` failed: {output}")]
    Command { command: String, output: String },

    /// A kubeconfig file could not be read, merged or written.
    #[error("kubeconfig {}: {reason}", path.display())]
    Kubeconfig { path: PathBuf, reason: String },

    /// Another process holds the kubeconfig lock for too long.
    #[error(
        "kubeconfig {} is locked by another process ({}); if none runs, remove the lock file",
        path.display(),
        lock.display()
    )]
    KubeconfigLocked { path: PathBuf, lock: PathBuf },

    /// A profile file is invalid.
    #[error("profile {}: {reason}", path.display())]
    Profile { path: PathBuf, reason: String },

    /// An addon is unknown or invalid.
    #[error("addon {name}: {reason}")]
    Addon { name: String, reason: String },

    /// A user-supplied value is invalid.
    #[error("{0}")]
    Invalid(String),

    /// The certificate authority and keys could not be made.
    #[error(transparent)]
    Pki(#[from] kubelab_pki::Error),

    /// Something did not happen before its deadline.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout { what: String, seconds: u64 },

    /// The node entrypoint could not prepare the container.
    #[error("node init: cannot {operation}: {reason}")]
    NodeInit { operation: String, reason: String },
}

impl Error {
    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
        error: std::io::Error,
    ) -> Self {
        Error::Io {
            operation,
            path: path.into(),
            error,
        }
    }

    pub(crate) fn engine(operation: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Engine {
            operation: operation.into(),
            message: err.to_string(),
        }
    }

    pub(crate) fn node_init(operation: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::NodeInit {
            operation: operation.into(),
            reason: reason.to_string(),
        }
    }
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The binary prints errors with their source chain: an I/O error must appear once.
    #[test]
    fn io_errors_are_not_repeated_by_the_chain() {
        let e = Error::io(
            "read",
            "/nonexistent",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(e.to_string(), "cannot read /nonexistent: entity not found");
    }
}
