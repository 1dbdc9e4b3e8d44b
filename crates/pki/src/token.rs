//! k3s-style join tokens: `K10<sha256 of the CA PEM>::<user>:<password>`.
//!
//! The hash lets a joining node pin the server's CA before trusting anything it says; the
//! password proves to the server that the node was invited.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::fs;
use crate::Error;

/// Prefix of a full (CA-pinning) token.
const PREFIX: &str = "K10";
/// User name carried by node tokens.
pub const NODE_TOKEN_USER: &str = "node";
/// Name of the token file inside the data directory.
pub const NODE_TOKEN_FILE: &str = "node-token";

/// The parts of a join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedToken {
    /// Lower-case hex SHA-256 of the CA PEM, when the token pins a CA (the `K10` form).
    pub ca_hash: Option<String>,
    pub username: String,
    pub password: String,
}

/// Lower-case hex SHA-256 of the CA bundle exactly as served (the bytes of `ca_pem`).
pub fn ca_hash(ca_pem: &str) -> String {
    let digest = Sha256::digest(ca_pem.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A full node join token: `"K10" + hex(sha256(ca_pem)) + "::node:" + secret`.
pub fn node_token(ca_pem: &str, secret: &str) -> String {
    format!("{PREFIX}{}::{NODE_TOKEN_USER}:{secret}", ca_hash(ca_pem))
}

/// Parse a token in one of three forms: `K10<hash>::<user>:<password>` (pins the CA),
/// `<user>:<password>`, or a bare `<password>` (user `node`).
pub fn parse_token(token: &str) -> Result<ParsedToken, Error> {
    let token = token.trim();
    if token.is_empty() {
        return Err(Error::invalid_token("it is empty"));
    }
    let (ca_hash, credentials) = match token.strip_prefix(PREFIX) {
        Some(rest) => {
            let Some((hash, credentials)) = rest.split_once("::") else {
                return Err(Error::invalid_token(
                    "it starts with K10 but has no '::' after the CA hash",
                ));
            };
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::invalid_token(
                    "the CA hash must be 64 hexadecimal characters",
                ));
            }
            (Some(hash.to_ascii_lowercase()), credentials)
        }
        None => (None, token),
    };
    let (username, password) = match credentials.split_once(':') {
        Some((username, password)) => (username, password),
        None => (NODE_TOKEN_USER, credentials),
    };
    if username.is_empty() {
        return Err(Error::invalid_token("the user name is empty"));
    }
    if password.is_empty() {
        return Err(Error::invalid_token("the password is empty"));
    }
    if token.chars().any(char::is_whitespace) {
        return Err(Error::invalid_token("it contains whitespace"));
    }
    Ok(ParsedToken {
        ca_hash,
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

impl ParsedToken {
    /// Check the pinned CA hash (if any) against the CA the server presents.
    pub fn verify_ca(&self, ca_pem: &str) -> Result<(), Error> {
        match &self.ca_hash {
            None => Ok(()),
            Some(expected) => {
                let actual = ca_hash(ca_pem);
                if *expected == actual {
                    Ok(())
                } else {
                    Err(Error::TokenCaMismatch {
                        expected: expected.clone(),
                        actual,
                    })
                }
            }
        }
    }
}

/// Server side: accept `presented` when its credentials equal those of `server_token` and, if it
/// pins a CA, the same CA. Comparison of the password takes constant time.
pub fn verify_node_token(presented: &str, server_token: &str) -> Result<ParsedToken, Error> {
    let presented = parse_token(presented)?;
    let expected = parse_token(server_token)?;
    if let (Some(presented_hash), Some(expected_hash)) = (&presented.ca_hash, &expected.ca_hash) {
        if presented_hash != expected_hash {
            return Err(Error::TokenCaMismatch {
                expected: presented_hash.clone(),
                actual: expected_hash.clone(),
            });
        }
    }
    let same_user = presented.username == expected.username;
    let same_password =
        constant_time_eq(presented.password.as_bytes(), expected.password.as_bytes());
    if same_user && same_password {
        Ok(presented)
    } else {
        Err(Error::TokenRejected)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Load the node token from `<data_dir>/node-token`, or create it with a random 128-bit secret
/// (mode 0600). An existing token whose CA hash is stale keeps its secret and gets the current
/// hash; a malformed token file is an error (nodes may hold it; we do not silently replace it).
pub fn ensure_node_token(data_dir: &Path, ca_pem: &str) -> Result<String, Error> {
    let path = data_dir.join(NODE_TOKEN_FILE);
    if let Some(existing) = fs::read_optional(&path)? {
        fs::tighten_private_file(&path)?;
        let parsed = parse_token(&existing).map_err(|err| {
            Error::parse(format!("node token {}", path.display()), err.to_string())
        })?;
        let current = node_token(ca_pem, &parsed.password);
        if existing.trim() == current {
            return Ok(current);
        }
        tracing::warn!(path = %path.display(), "node token does not pin the current CA; rewriting it with the same secret");
        fs::write_atomic(&path, current.as_bytes(), fs::PRIVATE_FILE_MODE)?;
        return Ok(current);
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|err| Error::io("create directory", data_dir, err))?;
    let secret: [u8; 16] = rand::random();
    let secret: String = secret.iter().map(|byte| format!("{byte:02x}")).collect();
    let token = node_token(ca_pem, &secret);
    fs::write_atomic(&path, token.as_bytes(), fs::PRIVATE_FILE_MODE)?;
    tracing::info!(path = %path.display(), "created node token");
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn token_roundtrip() {
        let token = node_token(CA, "s3cret");
        assert!(token.starts_with("K10"));
        assert!(token.ends_with("::node:s3cret"));
        let parsed = parse_token(&token).unwrap();
        assert_eq!(parsed.ca_hash.as_deref(), Some(ca_hash(CA).as_str()));
        assert_eq!(parsed.username, "node");
        assert_eq!(parsed.password, "s3cret");
        parsed.verify_ca(CA).unwrap();
        assert!(matches!(
            parsed.verify_ca("another CA"),
            Err(Error::TokenCaMismatch { .. })
        ));
    }

    #[test]
    fn short_forms() {
        let parsed = parse_token("agent:pw").unwrap();
        assert_eq!(parsed.ca_hash, None);
        assert_eq!(parsed.username, "agent");
        assert_eq!(parsed.password, "pw");
        let parsed = parse_token("  justapassword\n").unwrap();
        assert_eq!(parsed.username, "node");
        assert_eq!(parsed.password, "justapassword");
        // Passwords may contain ':'.
        assert_eq!(parse_token("u:a:b").unwrap().password, "a:b");
    }

    #[test]
    fn parse_errors() {
        let hash = ca_hash(CA);
        for bad in [
            "".to_owned(),
            "   ".to_owned(),
            "K10nohash".to_owned(),
            format!("K10{}::node:pw", &hash[..63]),
            format!("K10{}zz::node:pw", &hash[..62]),
            format!("K10{hash}::node:"),
            format!("K10{hash}:::pw"),
            ":pw".to_owned(),
            "node:".to_owned(),
            "node:pass word".to_owned(),
        ] {
            let err = parse_token(&bad).unwrap_err();
            assert!(matches!(err, Error::InvalidToken { .. }), "{bad:?}: {err}");
            assert!(err.to_string().starts_with("invalid node token: "));
        }
    }

    #[test]
    fn server_side_verification() {
        let server = node_token(CA, "right");
        assert!(verify_node_token(&server, &server).is_ok());
        assert!(verify_node_token("node:right", &server).is_ok());
        assert!(verify_node_token("right", &server).is_ok());
        assert!(matches!(
            verify_node_token(&node_token(CA, "wrong"), &server),
            Err(Error::TokenRejected)
        ));
        assert!(matches!(
            verify_node_token("other:right", &server),
            Err(Error::TokenRejected)
        ));
        assert!(matches!(
            verify_node_token(&node_token("other CA", "right"), &server),
            Err(Error::TokenCaMismatch { .. })
        ));
    }

    #[test]
    fn ensure_creates_once_and_reuses() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_node_token(dir.path(), CA).unwrap();
        let path = dir.path().join("node-token");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let parsed = parse_token(&first).unwrap();
        assert_eq!(parsed.password.len(), 32);
        assert_eq!(ensure_node_token(dir.path(), CA).unwrap(), first);

        // A new CA keeps the secret but updates the pin.
        let rotated = ensure_node_token(dir.path(), "new CA").unwrap();
        assert_eq!(rotated, node_token("new CA", &parsed.password));

        std::fs::write(&path, "K10garbage").unwrap();
        assert!(matches!(
            ensure_node_token(dir.path(), CA),
            Err(Error::Parse { .. })
        ));
    }
}
