//! User authentication: a private key file (optionally passphrase-protected) or ssh-agent.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::Handle;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};

use super::SshError;
use super::known_hosts::fingerprint;
use super::session::Client;

/// Environment variable holding the passphrase of encrypted identity files.
pub const PASSPHRASE_ENV: &str = "DIRECTOR_BOOT_KEY_PASSPHRASE";

/// Where secrets come from; read from the environment once per connection.
#[derive(Clone, Default)]
pub struct Credentials {
    pub passphrase: Option<String>,
    pub agent_socket: Option<PathBuf>,
}

impl Credentials {
    pub fn from_env() -> Self {
        Credentials {
            passphrase: std::env::var(PASSPHRASE_ENV).ok().filter(|p| !p.is_empty()),
            agent_socket: std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        }
    }
}

// Never print the passphrase, even in debug output.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("agent_socket", &self.agent_socket)
            .finish()
    }
}

/// What to authenticate with, prepared before the (timed) connection starts.
pub enum Identity {
    Key { path: PathBuf, key: Arc<PrivateKey> },
    Agent { socket: Option<PathBuf> },
}

fn describe(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm(), fingerprint(key))
}

/// Load the identity for an endpoint. Decrypting a key can take a while (bcrypt KDF), so it
/// runs on the blocking pool and before the connect timeout starts.
pub async fn prepare(
    host: &str,
    identity_file: Option<&Path>,
    creds: &Credentials,
) -> Result<Identity, SshError> {
    let Some(path) = identity_file else {
        return Ok(Identity::Agent {
            socket: creds.agent_socket.clone(),
        });
    };
    let path = path.to_path_buf();
    let passphrase = creds.passphrase.clone();
    let key_err = |reason: String| SshError::Key {
        host: host.to_string(),
        path: path.clone(),
        reason,
    };
    let loaded = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || load_key(&path, passphrase.as_deref()))
            .await
            .map_err(|e| key_err(e.to_string()))?
    };
    let key = loaded.map_err(key_err)?;
    Ok(Identity::Key {
        path,
        key: Arc::new(key),
    })
}

fn load_key(path: &Path, passphrase: Option<&str>) -> Result<PrivateKey, String> {
    use russh::keys::Error as KeyError;
    match russh::keys::load_secret_key(path, None) {
        Ok(key) => Ok(key),
        Err(KeyError::KeyIsEncrypted) => match passphrase {
            None => Err(format!(
                "the key is passphrase-protected; set {PASSPHRASE_ENV} or use ssh-agent"
            )),
            Some(p) => russh::keys::load_secret_key(path, Some(p)).map_err(|e| {
                format!("cannot decrypt it with ${PASSPHRASE_ENV} (wrong passphrase?): {e}")
            }),
        },
        Err(KeyError::IO(e)) => Err(e.to_string()),
        Err(e) => Err(format!("not a usable private key: {e}")),
    }
}

/// Authenticate `user` on an established connection.
pub async fn authenticate(
    handle: &mut Handle<Client>,
    host: &str,
    user: &str,
    identity: &Identity,
) -> Result<(), SshError> {
    let session_err = |e: russh::Error| SshError::Session {
        host: host.to_string(),
        reason: format!("authentication: {e}"),
    };
    let auth_failed = |tried: String| SshError::Auth {
        host: host.to_string(),
        user: user.to_string(),
        tried,
    };
    match identity {
        Identity::Key { path, key } => {
            let hash = if key.algorithm().is_rsa() {
                rsa_hash(handle).await
            } else {
                None
            };
            let result = handle
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key.clone(), hash))
                .await
                .map_err(session_err)?;
            if result.success() {
                return Ok(());
            }
            Err(auth_failed(format!(
                "key {} ({}){}",
                path.display(),
                describe(key.public_key()),
                failure_note(&result)
            )))
        }
        Identity::Agent { socket } => {
            let Some(socket) = socket else {
                return Err(auth_failed(
                    "no identity_file configured and SSH_AUTH_SOCK is not set, so no ssh-agent"
                        .into(),
                ));
            };
            let mut agent = AgentClient::connect_uds(socket).await.map_err(|e| {
                auth_failed(format!(
                    "cannot reach ssh-agent at {}: {e}",
                    socket.display()
                ))
            })?;
            // Needed for destination-constrained agent keys; older agents refuse it harmlessly.
            if let Some(binding) = handle.agent_session_binding().cloned()
                && let Err(e) = agent.bind_session(&binding, false).await
            {
                tracing::debug!(host, "ssh-agent session binding refused: {e}");
            }
            let identities = agent
                .request_identities()
                .await
                .map_err(|e| auth_failed(format!("ssh-agent at {}: {e}", socket.display())))?;
            let mut tried = Vec::new();
            let mut note = String::new();
            for identity in identities {
                let AgentIdentity::PublicKey { key, comment } = identity else {
                    continue;
                };
                let hash = if key.algorithm().is_rsa() {
                    rsa_hash(handle).await
                } else {
                    None
                };
                tried.push(if comment.is_empty() {
                    describe(&key)
                } else {
                    format!("{} {comment}", describe(&key))
                });
                match handle
                    .authenticate_publickey_with(user, key, hash, &mut agent)
                    .await
                {
                    Ok(r) if r.success() => return Ok(()),
                    Ok(r) => note = failure_note(&r),
                    // The agent declined to sign this key; go on with the next one.
                    Err(e) => tracing::debug!(host, "ssh-agent could not sign: {e}"),
                }
            }
            if tried.is_empty() {
                Err(auth_failed(format!(
                    "ssh-agent at {} holds no keys",
                    socket.display()
                )))
            } else {
                Err(auth_failed(format!(
                    "ssh-agent keys: {}{note}",
                    tried.join(", ")
                )))
            }
        }
    }
}

/// Why the server said no, beyond "key not accepted", when it tells us.
fn failure_note(result: &russh::client::AuthResult) -> String {
    use russh::MethodKind;
    let russh::client::AuthResult::Failure {
        remaining_methods,
        partial_success,
    } = result
    else {
        return String::new();
    };
    if *partial_success {
        return "; the key was accepted but the server wants another factor".into();
    }
    if !remaining_methods.is_empty() && !remaining_methods.contains(&MethodKind::PublicKey) {
        let names: Vec<&str> = remaining_methods.iter().map(<&str>::from).collect();
        return format!(
            "; the server does not accept keys for this user (it offers: {})",
            names.join(", ")
        );
    }
    String::new()
}

/// rsa-sha2-512/256 when the server announces them (RFC 8308), legacy ssh-rsa otherwise.
async fn rsa_hash(handle: &Handle<Client>) -> Option<russh::keys::HashAlg> {
    handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten()
}
