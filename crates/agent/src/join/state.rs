//! The agent's state directory (`--data-dir`, 0700): what must survive restarts for the node to
//! be the same node.
//!
//! | file                      | mode | what                                                  |
//! |---------------------------|------|-------------------------------------------------------|
//! | `node-password`           | 0600 | random password presented at every join under a name  |
//! | `node-id`                 | 0600 | the `--with-node-id` suffix, made once                |
//! | `client-kubelet.key/.crt` | 0600/0644 | the node's API client identity                   |
//! | `serving-kubelet.key/.crt`| 0600/0644 | the kubelet's serving certificate                |
//! | `ca.crt`                  | 0644 | the pinned cluster CA                                 |
//! | `kubelet.kubeconfig`      | 0600 | the node's credentials against the registration server |

use std::io::Write;
use std::path::{Path, PathBuf};

use super::JoinError;

pub const NODE_PASSWORD_FILE: &str = "node-password";
pub const NODE_ID_FILE: &str = "node-id";
pub const CA_FILE: &str = "ca.crt";
pub const KUBECONFIG_FILE: &str = "kubelet.kubeconfig";

const PRIVATE: u32 = 0o600;
const PUBLIC: u32 = 0o644;

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Create `dir` if needed and make it private (0700).
    pub fn open(dir: &Path) -> Result<StateDir, JoinError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).map_err(|e| state_error(dir, "create", e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| state_error(dir, "set permissions on", e))?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The trimmed contents of a private file, made with `make` (and stored 0600) when absent
    /// or empty. An existing file readable by others is tightened to 0600.
    pub fn private_value(
        &self,
        file: &str,
        make: impl FnOnce() -> Result<String, JoinError>,
    ) -> Result<String, JoinError> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(file);
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => {
                let mode = std::fs::metadata(&path)
                    .map_err(|e| state_error(&path, "inspect", e))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(PRIVATE))
                        .map_err(|e| state_error(&path, "set permissions on", e))?;
                }
                Ok(text.trim().to_owned())
            }
            Ok(_) => self.make_value(&path, make),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.make_value(&path, make),
            Err(e) => Err(state_error(&path, "read", e)),
        }
    }

    fn make_value(
        &self,
        path: &Path,
        make: impl FnOnce() -> Result<String, JoinError>,
    ) -> Result<String, JoinError> {
        let value = make()?.trim().to_owned();
        write_atomic(path, format!("{value}\n").as_bytes(), PRIVATE)?;
        Ok(value)
    }

    /// The node password: 32 random hex characters made on first use.
    pub fn node_password(&self) -> Result<String, JoinError> {
        self.private_value(NODE_PASSWORD_FILE, || Ok(random_hex(16)))
    }

    /// The `--with-node-id` suffix: 8 random hex characters made on first use.
    pub fn node_id(&self) -> Result<String, JoinError> {
        self.private_value(NODE_ID_FILE, || Ok(random_hex(4)))
    }

    /// A private key (PEM), made here on first use and kept.
    pub fn private_key(&self, file: &str) -> Result<String, JoinError> {
        self.private_value(file, || {
            kubelab_pki::generate_private_key().map_err(JoinError::Pki)
        })
        .map(|pem| format!("{pem}\n"))
    }

    pub fn write_public(&self, file: &str, contents: &str) -> Result<(), JoinError> {
        write_atomic(&self.path(file), contents.as_bytes(), PUBLIC)
    }

    pub fn write_private(&self, file: &str, contents: &str) -> Result<(), JoinError> {
        write_atomic(&self.path(file), contents.as_bytes(), PRIVATE)
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

fn state_error(path: &Path, operation: &'static str, source: std::io::Error) -> JoinError {
    JoinError::State {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

/// Write through a temporary sibling created with `mode`, then rename over `path`.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), JoinError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| state_error(&tmp, "create", e))?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(|e| state_error(&tmp, "write", e))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(|e| state_error(&tmp, "set permissions on", e))?;
        std::fs::rename(&tmp, path).map_err(|e| state_error(path, "replace", e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn password_and_id_are_made_once_and_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("agent");
        let state = StateDir::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let password = state.node_password().unwrap();
        assert_eq!(password.len(), 32);
        assert_eq!(mode(&state.path(NODE_PASSWORD_FILE)), 0o600);
        assert_eq!(
            StateDir::open(&dir).unwrap().node_password().unwrap(),
            password
        );
        let id = state.node_id().unwrap();
        assert_eq!(id.len(), 8);
        assert_eq!(state.node_id().unwrap(), id);

        // A loosened file is tightened, its value kept.
        let path = state.path(NODE_PASSWORD_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(state.node_password().unwrap(), password);
        assert_eq!(mode(&path), 0o600);

        let key = state.private_key("client-kubelet.key").unwrap();
        assert!(key.contains("PRIVATE KEY"));
        assert_eq!(state.private_key("client-kubelet.key").unwrap(), key);
    }
}
