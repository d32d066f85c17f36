//! Establishing connections: TCP or a bastion's direct-tcpip channel, the SSH handshake
//! with host key verification, authentication, all under one connect deadline.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::PublicKeyOrCertificate;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::auth::{self, Credentials, Identity};
use super::{SshConfig, SshError, known_hosts};
use crate::inventory::SshEndpoint;

/// Probe a silent peer after this long, and give up after `KEEPALIVE_MAX` unanswered probes,
/// so a dead host fails running commands in about a minute instead of hanging.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEPALIVE_MAX: usize = 3;

// Tests shorten the keepalive interval to see a dead peer detected quickly. Per thread:
// each test runs its own single-threaded runtime, so other tests keep the real value.
#[cfg(test)]
thread_local! {
    pub static TEST_KEEPALIVE: std::cell::Cell<Option<Duration>> =
        const { std::cell::Cell::new(None) };
}

fn keepalive_interval() -> Duration {
    #[cfg(test)]
    if let Some(d) = TEST_KEEPALIVE.with(std::cell::Cell::get) {
        return d;
    }
    KEEPALIVE_INTERVAL
}

/// russh client handler: only host key verification is ours.
pub struct Client {
    host: String,
    addr: IpAddr,
    port: u16,
    known_hosts: PathBuf,
    accept_new: bool,
}

/// Errors a connection task can end with: our own verdict on the host key, or russh's.
#[derive(Debug)]
pub enum ClientError {
    Rejected(Box<SshError>),
    Russh(russh::Error),
}

impl From<russh::Error> for ClientError {
    fn from(e: russh::Error) -> Self {
        ClientError::Russh(e)
    }
}

impl client::Handler for Client {
    type Error = ClientError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // Certificates are checked by their embedded key like plain keys (no CA trust).
        let key = server_public_key.public_key();
        known_hosts::verify(
            &self.host,
            self.addr,
            self.port,
            &key,
            &self.known_hosts,
            self.accept_new,
        )
        .map_err(|e| ClientError::Rejected(Box::new(e)))?;
        Ok(true)
    }
}

/// An authenticated connection, plus the bastion it runs through (kept alive by it).
pub struct Connection {
    pub handle: Handle<Client>,
    pub bastion: Option<Arc<Handle<Client>>>,
}

fn addr_of(ep: &SshEndpoint) -> String {
    SocketAddr::new(ep.address, ep.port).to_string()
}

fn client_config(cfg: &SshConfig, ep: &SshEndpoint) -> Arc<client::Config> {
    Arc::new(client::Config {
        keepalive_interval: Some(keepalive_interval()),
        keepalive_max: KEEPALIVE_MAX,
        inactivity_timeout: None,
        nodelay: true,
        preferred: russh::Preferred {
            key: known_hosts::preferred_algorithms(&cfg.known_hosts, ep.address, ep.port).into(),
            ..russh::Preferred::DEFAULT
        },
        ..Default::default()
    })
}

/// Connect `name` at `ep` (through the bastion when configured), verify, authenticate.
pub async fn connect(
    name: &str,
    ep: &SshEndpoint,
    cfg: &SshConfig,
    creds: &Credentials,
) -> Result<Connection, SshError> {
    // Key files are read (and decrypted) before the clock starts: that is local work.
    let identity = auth::prepare(name, ep.identity_file.as_deref(), creds).await?;
    // Each SSH connection (bastion, then target) gets the full timeout of its own.
    let bastion = match &cfg.bastion {
        Some(b) => Some(bastion(b, cfg, creds).await?),
        None => None,
    };
    let deadline = Instant::now() + cfg.connect_timeout;
    let timed_out = || SshError::ConnectTimeout {
        host: name.to_string(),
        addr: addr_of(ep),
        secs: cfg.connect_timeout.as_secs(),
    };
    let handle = tokio::time::timeout_at(deadline, async {
        match &bastion {
            Some(b) => {
                let channel = b
                    .channel_open_direct_tcpip(
                        ep.address.to_string(),
                        ep.port.into(),
                        "127.0.0.1",
                        0,
                    )
                    .await
                    .map_err(|e| SshError::Connect {
                        host: name.to_string(),
                        addr: addr_of(ep),
                        reason: format!("the bastion could not open a connection: {e}"),
                    })?;
                establish(name, ep, cfg, &identity, channel.into_stream()).await
            }
            None => {
                let tcp = tcp_connect(name, ep).await?;
                establish(name, ep, cfg, &identity, super::wire::Counted(tcp)).await
            }
        }
    })
    .await
    .map_err(|_| timed_out())??;
    Ok(Connection { handle, bastion })
}

async fn tcp_connect(host: &str, ep: &SshEndpoint) -> Result<tokio::net::TcpStream, SshError> {
    let addr = SocketAddr::new(ep.address, ep.port);
    tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| SshError::Connect {
            host: host.to_string(),
            addr: addr.to_string(),
            reason: match e.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    "connection refused (is sshd listening on that port?)".to_string()
                }
                _ => e.to_string(),
            },
        })
}

/// Handshake, verify the host key, authenticate, over any byte stream.
async fn establish<S>(
    host: &str,
    ep: &SshEndpoint,
    cfg: &SshConfig,
    identity: &Identity,
    stream: S,
) -> Result<Handle<Client>, SshError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handler = Client {
        host: host.to_string(),
        addr: ep.address,
        port: ep.port,
        known_hosts: cfg.known_hosts.clone(),
        accept_new: cfg.accept_new_host_keys,
    };
    let mut handle = client::connect_stream(client_config(cfg, ep), stream, handler)
        .await
        .map_err(|e| match e {
            ClientError::Rejected(e) => *e,
            ClientError::Russh(e) => SshError::Connect {
                host: host.to_string(),
                addr: addr_of(ep),
                reason: format!("SSH handshake failed: {e}"),
            },
        })?;
    auth::authenticate(&mut handle, host, &ep.user, identity).await?;
    tracing::debug!(host, addr = %addr_of(ep), "SSH session established");
    Ok(handle)
}

/// Bastion identity: address, port, user, key file, known_hosts, accept-new.
type BastionKey = (IpAddr, u16, String, Option<PathBuf>, PathBuf, bool);

/// Live bastion sessions, shared by every host connecting through the same jump host, so
/// a wide fan-out does not hammer the bastion's sshd (MaxStartups) with parallel logins.
static BASTIONS: tokio::sync::Mutex<Option<HashMap<BastionKey, Weak<Handle<Client>>>>> =
    tokio::sync::Mutex::const_new(None);

async fn bastion(
    ep: &SshEndpoint,
    cfg: &SshConfig,
    creds: &Credentials,
) -> Result<Arc<Handle<Client>>, SshError> {
    let label = format!("bastion {}", ep.address);
    let key: BastionKey = (
        ep.address,
        ep.port,
        ep.user.clone(),
        ep.identity_file.clone(),
        cfg.known_hosts.clone(),
        cfg.accept_new_host_keys,
    );
    // Held while connecting so concurrent hosts wait for, then share, one bastion session.
    let mut cache = BASTIONS.lock().await;
    let map = cache.get_or_insert_with(HashMap::new);
    map.retain(|_, weak| weak.upgrade().is_some_and(|h| !h.is_closed()));
    if let Some(live) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(live);
    }
    let identity = auth::prepare(&label, ep.identity_file.as_deref(), creds).await?;
    let handle = tokio::time::timeout(cfg.connect_timeout, async {
        let tcp = tcp_connect(&label, ep).await?;
        establish(&label, ep, cfg, &identity, super::wire::Counted(tcp)).await
    })
    .await
    .map_err(|_| SshError::ConnectTimeout {
        host: label.clone(),
        addr: addr_of(ep),
        secs: cfg.connect_timeout.as_secs(),
    })??;
    let handle = Arc::new(handle);
    map.insert(key, Arc::downgrade(&handle));
    Ok(handle)
}
