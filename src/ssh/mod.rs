//! SSH transport on russh: one persistent session per host, sudo, exec with exit codes,
//! verified atomic uploads, ProxyJump through a bastion, and known_hosts verification.
//!
//! CONTRACT (other modules code against these signatures; keep them stable).
//!
//! Layout: `session` connects (TCP or a shared bastion's direct-tcpip channel, handshake,
//! keepalives, connect deadline); `known_hosts` verifies and pins host keys; `auth` loads
//! key files or talks to ssh-agent; `exec` runs commands (one channel each, lines streamed,
//! command timeout, `sudo -n` wrapping); `upload` does verified atomic writes and reads;
//! `quote` is the shell quoting every generated command relies on. Tests in `tests` run
//! against real `sshd` processes started by `testing`.

mod auth;
mod exec;
mod known_hosts;
mod quote;
mod session;
mod upload;
mod wire;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::inventory::SshEndpoint;

pub use auth::PASSPHRASE_ENV;
pub use known_hosts::fingerprint;
pub use quote::sh_quote;
pub use upload::{SmallFile, sha256_hex};
pub use wire::{Wire, bytes_sent, set_cache_dir as set_wire_cache_dir};

/// Settings for every connection of one run.
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// OpenSSH-format known_hosts file that is read and (with accept_new) appended to.
    pub known_hosts: PathBuf,
    /// Pin keys of hosts not seen before instead of refusing them.
    pub accept_new_host_keys: bool,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// Jump host every connection goes through.
    pub bastion: Option<SshEndpoint>,
}

/// Which stream a line of remote output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The result of one remote command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub exit_code: u32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// Whether an upload wrote anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadOutcome {
    /// The remote file already had this content and mode.
    Unchanged,
    Written,
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("{host}: cannot connect to {addr}: {reason}")]
    Connect {
        host: String,
        addr: String,
        reason: String,
    },
    #[error(
        "{host}: no SSH handshake with {addr} within {secs} s (is the host up and sshd running?)"
    )]
    ConnectTimeout {
        host: String,
        addr: String,
        secs: u64,
    },
    #[error(
        "{host}: host key {fingerprint} is not in {known_hosts}; verify it and re-run with --accept-new-host-keys to pin it"
    )]
    HostKeyUnknown {
        host: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },
    #[error(
        "{host}: HOST KEY CHANGED: {known_hosts}:{line} pins {expected}, the host offered {offered}. Someone may be intercepting the connection; if the host was rebuilt, remove line {line} and re-run"
    )]
    HostKeyChanged {
        host: String,
        expected: String,
        offered: String,
        known_hosts: PathBuf,
        line: usize,
    },
    #[error("{host}: authentication as {user} failed ({tried})")]
    Auth {
        host: String,
        user: String,
        tried: String,
    },
    #[error("{host}: cannot read key {path}: {reason}")]
    Key {
        host: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{host}: `{command}` did not finish within {secs} s")]
    CommandTimeout {
        host: String,
        command: String,
        secs: u64,
    },
    #[error(
        "{host}: sudo needs a password for {user}; allow passwordless sudo (NOPASSWD) for this user"
    )]
    SudoPassword { host: String, user: String },
    #[error("{host}: upload to {remote} failed: {reason}")]
    Upload {
        host: String,
        remote: String,
        reason: String,
    },
    #[error("{host}: SSH session failed: {reason}")]
    Session { host: String, reason: String },
}

/// Concurrent channels per session; below sshd's default MaxSessions (10).
const MAX_CHANNELS: usize = 8;

/// A live, authenticated SSH session to one host. Cheap to share (`&self` methods);
/// commands on one session may run concurrently on separate channels.
pub struct Session {
    name: String,
    user: String,
    sudo: bool,
    command_timeout: Duration,
    handle: russh::client::Handle<session::Client>,
    channels: tokio::sync::Semaphore,
    /// How file contents travel (`Wire`), set once the host's facts are known.
    wire: std::sync::atomic::AtomicU8,
    /// Keeps a shared bastion session alive while this session uses it.
    _bastion: Option<Arc<russh::client::Handle<session::Client>>>,
}

impl Session {
    /// Connect (through the bastion when configured), verify the host key, authenticate with
    /// the endpoint's key file (passphrase from $DIRECTOR_BOOT_KEY_PASSPHRASE) or the agent.
    /// `sudo` makes `sudo()` wrap commands in `sudo -n`.
    pub async fn connect(
        name: &str,
        endpoint: &SshEndpoint,
        sudo: bool,
        cfg: &SshConfig,
    ) -> Result<Session, SshError> {
        Self::connect_with(name, endpoint, sudo, cfg, &auth::Credentials::from_env()).await
    }

    /// `connect` with explicit secrets instead of the environment's.
    pub(crate) async fn connect_with(
        name: &str,
        endpoint: &SshEndpoint,
        sudo: bool,
        cfg: &SshConfig,
        creds: &auth::Credentials,
    ) -> Result<Session, SshError> {
        let conn = session::connect(name, endpoint, cfg, creds).await?;
        Ok(Session {
            name: name.to_string(),
            user: endpoint.user.clone(),
            sudo,
            command_timeout: cfg.command_timeout,
            handle: conn.handle,
            channels: tokio::sync::Semaphore::new(MAX_CHANNELS),
            wire: std::sync::atomic::AtomicU8::new(Wire::Plain.as_u8()),
            _bastion: conn.bastion,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Compress large uploads this way from now on (the host has the decoder).
    pub fn set_wire(&self, wire: Wire) {
        self.wire
            .store(wire.as_u8(), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn wire(&self) -> Wire {
        Wire::from_u8(self.wire.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Run a shell command as the login user; output captured.
    pub async fn run(&self, command: &str) -> Result<Output, SshError> {
        self.run_streamed(command, false, |_, _| {}).await
    }

    /// Run a shell command as root (through `sudo -n` for non-root users).
    pub async fn sudo(&self, command: &str) -> Result<Output, SshError> {
        self.run_streamed(command, true, |_, _| {}).await
    }

    /// Run a command, calling `on_line` for every output line as it arrives, and capture it.
    /// Bounded by the command timeout. A non-zero exit is NOT an error (see `Output`).
    pub async fn run_streamed<F>(
        &self,
        command: &str,
        privileged: bool,
        on_line: F,
    ) -> Result<Output, SshError>
    where
        F: FnMut(Stream, &str) + Send,
    {
        self.run_streamed_impl(command, privileged, on_line).await
    }

    /// Write `data` to `remote` atomically (temp file in the same dir, fsync, rename) with
    /// `mode`, as root, then verify its sha256 on the host. Skips the write when the remote
    /// file already has the same sha256 and mode.
    pub async fn upload(
        &self,
        data: &[u8],
        remote: &str,
        mode: u32,
    ) -> Result<UploadOutcome, SshError> {
        self.upload_impl(data, remote, mode).await
    }

    /// Several small files in one round trip; see [`SmallFile`].
    pub async fn upload_many(&self, files: &[SmallFile<'_>]) -> Result<(), SshError> {
        self.upload_many_impl(files).await
    }

    /// Like `upload`, streaming a (large) local file.
    pub async fn upload_file(
        &self,
        local: &Path,
        remote: &str,
        mode: u32,
    ) -> Result<UploadOutcome, SshError> {
        self.upload_file_impl(local, remote, mode).await
    }

    /// Read a remote file as root; `None` when it does not exist.
    pub async fn read_file(&self, remote: &str) -> Result<Option<Vec<u8>>, SshError> {
        self.read_file_impl(remote).await
    }

    /// Close the session politely.
    /// Whether the connection is gone (a long-lived holder reconnects then).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}
