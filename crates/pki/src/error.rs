//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while making or loading certificates, kubeconfigs and tokens.
///
/// Messages are lower-case and say what was being done to what, so that the binary can print
/// them as they are (e.g. "cannot read /x/tls/ca.key: permission denied").
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system operation failed.
    #[error("cannot {operation} {}: {}", path.display(), describe_io(source))]
    Io {
        /// What we tried to do ("read", "write", "create directory", "set permissions on", ...).
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A PEM or DER blob could not be understood.
    #[error("cannot parse {what}: {reason}")]
    Parse {
        /// Which blob, e.g. "certificate /x/tls/ca.crt" or "client certificate".
        what: String,
        reason: String,
    },

    /// rcgen refused to generate a key or sign a certificate.
    #[error("cannot {operation} for {subject}: {source}")]
    Generate {
        /// "generate key", "sign certificate", "load CA key", ...
        operation: &'static str,
        /// Common name of the certificate being made.
        subject: String,
        #[source]
        source: rcgen::Error,
    },

    /// A requested subject alternative name is neither an IP address nor a valid DNS name.
    #[error("invalid subject alternative name {san:?}: {reason}; use a DNS name or an IP address")]
    InvalidSan { san: String, reason: String },

    /// The CA certificate exists but its private key does not; we never replace an existing CA.
    #[error(
        "the CA certificate {} exists but its key {} is missing; restore the key, or remove the \
         whole tls directory to start a new cluster CA (every issued certificate becomes invalid)",
        cert.display(),
        key.display()
    )]
    CaKeyMissing { cert: PathBuf, key: PathBuf },

    /// The CA key on disk does not belong to the CA certificate on disk.
    #[error(
        "the CA key {} does not match the CA certificate {}; restore the matching pair",
        key.display(),
        cert.display()
    )]
    CaKeyMismatch { cert: PathBuf, key: PathBuf },

    /// A client certificate carries no subject common name, so it names no user.
    #[error("client certificate has no subject common name (CN); it cannot name a user")]
    NoCommonName,

    /// A client certificate is expired or not yet valid.
    #[error("client certificate is expired or not yet valid")]
    NotValidNow,

    /// rustls refused the certificates or keys while building a TLS configuration.
    #[error("cannot {operation}: {source}")]
    Tls {
        operation: &'static str,
        #[source]
        source: rustls::Error,
    },

    /// rustls refused to build the client-certificate verifier.
    #[error("cannot build the client certificate verifier: {source}")]
    ClientVerifier {
        #[source]
        source: rustls::server::VerifierBuilderError,
    },

    /// The kubeconfig could not be rendered as YAML.
    #[error("cannot render kubeconfig: {source}")]
    Kubeconfig {
        #[source]
        source: serde_yaml::Error,
    },

    /// A join token is malformed.
    #[error("invalid node token: {reason}; expected K10<sha256 of CA>::<user>:<password>")]
    InvalidToken { reason: String },

    /// A join token pins a CA other than the one the server presents.
    #[error(
        "node token pins CA hash {expected} but the server CA hashes to {actual}; \
         the token belongs to another cluster"
    )]
    TokenCaMismatch { expected: String, actual: String },

    /// A join token does not carry the server's credentials.
    #[error("node token credentials do not match this server's token")]
    TokenRejected,
}

/// A short lower-case description of an I/O error, without the "(os error N)" suffix for the
/// common cases.
fn describe_io(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        io::ErrorKind::AlreadyExists => "file exists".to_owned(),
        _ => err.to_string(),
    }
}

impl Error {
    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            operation,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(what: impl Into<String>, reason: impl ToString) -> Self {
        Error::Parse {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn invalid_token(reason: impl Into<String>) -> Self {
        Error::InvalidToken {
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_message_is_lower_case_and_names_the_file() {
        let err = Error::io(
            "read",
            "/x/tls/ca.key",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(
            err.to_string(),
            "cannot read /x/tls/ca.key: permission denied"
        );
    }
}
