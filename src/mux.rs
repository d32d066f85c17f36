//! Connection reuse for `exec --persist SECS`, as OpenSSH's ControlPersist does for Ansible:
//! a background agent keeps verified, authenticated sessions to the inventory's hosts and
//! runs commands for later invocations over a private Unix socket, exiting after SECS idle.
//! A session is verified (host key) when the agent opens it; like ControlPersist, a key that
//! changes later is seen at the next reconnect, not while the session lives.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Mutex, mpsc};

use crate::cli::SshArgs;
use crate::commands::connect::load_inventory;
use crate::fleet::{connect, ssh_config};
use crate::inventory::{Host, Inventory};
use crate::paths::{Paths, ensure_private_dir};
use crate::ssh::{Output, Session, Stream};

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub hosts: Vec<String>,
    pub command: String,
    pub sudo: bool,
    pub concurrency: usize,
}

/// One line from the agent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Reply {
    Line {
        host: String,
        stderr: bool,
        line: String,
    },
    Done {
        host: String,
        output: WireOutput,
        seconds: f64,
    },
    Failed {
        host: String,
        error: String,
        seconds: f64,
    },
    End,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WireOutput {
    pub exit_code: u32,
    pub stdout: String,
    pub stderr: String,
}

/// The agent's socket for this inventory (its path and content) and these SSH settings.
pub fn socket_path(paths: &Paths, inventory: &Path, args: &SshArgs) -> anyhow::Result<PathBuf> {
    let canon = inventory
        .canonicalize()
        .with_context(|| format!("{}", inventory.display()))?;
    let mut h = Sha256::new();
    h.update(canon.to_string_lossy().as_bytes());
    h.update(std::fs::read(&canon)?);
    h.update(format!(
        "{}|{:?}|{}",
        args.accept_new_host_keys, args.connect_timeout, args.command_timeout
    ));
    let digest = hex::encode(h.finalize());
    Ok(paths
        .state
        .join("mux")
        .join(format!("{}.sock", &digest[..16])))
}

/// Client side: run `req` through a live agent, starting one when none answers.
/// `on_reply` sees every reply; returns None when no agent could be reached.
pub async fn run<F>(
    paths: &Paths,
    inventory: &Path,
    args: &SshArgs,
    persist_secs: u64,
    req: &Request,
    mut on_reply: F,
) -> anyhow::Result<Option<()>>
where
    F: FnMut(Reply),
{
    let socket = socket_path(paths, inventory, args)?;
    let stream = match UnixStream::connect(&socket).await {
        Ok(s) => s,
        Err(_) => {
            spawn_agent(paths, inventory, args, persist_secs, &socket)?;
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                if let Ok(s) = UnixStream::connect(&socket).await {
                    break s;
                }
                if Instant::now() > deadline {
                    return Ok(None);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{}\n", serde_json::to_string(req)?).as_bytes())
        .await?;
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let reply: Reply =
            serde_json::from_str(&line).context("garbled reply from the exec agent")?;
        if matches!(reply, Reply::End) {
            return Ok(Some(()));
        }
        on_reply(reply);
    }
    anyhow::bail!("the exec agent closed the connection early")
}

fn spawn_agent(
    paths: &Paths,
    inventory: &Path,
    args: &SshArgs,
    secs: u64,
    socket: &Path,
) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--state-dir")
        .arg(&paths.state)
        .arg("--cache-dir")
        .arg(&paths.cache)
        .arg("mux-agent")
        .arg(inventory)
        .arg("--idle")
        .arg(secs.to_string())
        .arg("--socket")
        .arg(socket)
        .arg("--command-timeout")
        .arg(args.command_timeout.to_string());
    if args.accept_new_host_keys {
        cmd.arg("--accept-new-host-keys");
    }
    if let Some(t) = args.connect_timeout {
        cmd.arg("--connect-timeout").arg(t.to_string());
    }
    // Its own process group: a Ctrl-C in the terminal ends the client, not the agent.
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .context("cannot start the exec agent")?;
    Ok(())
}

/// Agent side: serve requests until `idle` passes without one.
pub async fn serve(
    paths: &Paths,
    inventory: &Path,
    args: &SshArgs,
    idle: Duration,
    socket: &Path,
) -> anyhow::Result<()> {
    let inv = Arc::new(load_inventory(inventory)?);
    let cfg = Arc::new(ssh_config(paths, &inv, &args.fleet())?);
    let dir = socket.parent().context("socket path has no directory")?;
    ensure_private_dir(dir)?;
    // A socket nobody answers on is a leftover of a dead agent.
    if UnixStream::connect(socket).await.is_err() {
        let _ = std::fs::remove_file(socket);
    }
    let listener = UnixListener::bind(socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    let sessions: Arc<Mutex<HashMap<String, Arc<Session>>>> = Arc::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (inv, cfg, sessions) = (inv.clone(), cfg.clone(), sessions.clone());
                tokio::spawn(async move { let _ = handle(stream, &inv, &cfg, &sessions).await; });
            }
            _ = tokio::time::sleep(idle) => break,
        }
    }
    let _ = std::fs::remove_file(socket);
    Ok(())
}

async fn session_for(
    host: &Host,
    cfg: &crate::ssh::SshConfig,
    sessions: &Mutex<HashMap<String, Arc<Session>>>,
) -> anyhow::Result<Arc<Session>> {
    if let Some(s) = sessions.lock().await.get(&host.name)
        && !s.is_closed()
    {
        return Ok(s.clone());
    }
    let fresh = Arc::new(connect(host, cfg).await?);
    sessions
        .lock()
        .await
        .insert(host.name.clone(), fresh.clone());
    Ok(fresh)
}

async fn handle(
    stream: UnixStream,
    inv: &Inventory,
    cfg: &crate::ssh::SshConfig,
    sessions: &Mutex<HashMap<String, Arc<Session>>>,
) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let Some(line) = lines.next_line().await? else {
        return Ok(());
    };
    let req: Request = serde_json::from_str(&line)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Reply>();
    let writer = tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            let Ok(text) = serde_json::to_string(&reply) else {
                continue;
            };
            if write
                .write_all(format!("{text}\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = write.write_all(b"{\"kind\":\"end\"}\n").await;
    });
    let hosts: Vec<Host> = req
        .hosts
        .iter()
        .filter_map(|n| inv.host(n).cloned())
        .collect();
    crate::fanout::for_each(
        hosts,
        req.concurrency,
        |h| h.name.clone(),
        |host| {
            let tx = tx.clone();
            let command = req.command.clone();
            async move {
                let started = Instant::now();
                let result: anyhow::Result<Output> = async {
                    let session = session_for(&host, cfg, sessions).await?;
                    let name = host.name.clone();
                    let tx_lines = tx.clone();
                    Ok(session
                        .run_streamed(&command, req.sudo, move |stream, line| {
                            let _ = tx_lines.send(Reply::Line {
                                host: name.clone(),
                                stderr: stream == Stream::Stderr,
                                line: line.to_string(),
                            });
                        })
                        .await?)
                }
                .await;
                let seconds = started.elapsed().as_secs_f64();
                let _ = tx.send(match result {
                    Ok(o) => Reply::Done {
                        host: host.name.clone(),
                        output: WireOutput {
                            exit_code: o.exit_code,
                            stdout: o.stdout,
                            stderr: o.stderr,
                        },
                        seconds,
                    },
                    Err(e) => Reply::Failed {
                        host: host.name.clone(),
                        error: format!("{e:#}"),
                        seconds,
                    },
                });
                Ok(())
            }
        },
    )
    .await;
    drop(tx);
    let _ = writer.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_round_trip_as_json_lines() {
        let r = Reply::Line {
            host: "node1".into(),
            stderr: true,
            line: "x y".into(),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"kind":"line","host":"node1","stderr":true,"line":"x y"}"#
        );
        assert!(matches!(
            serde_json::from_str::<Reply>(r#"{"kind":"end"}"#).unwrap(),
            Reply::End
        ));
    }

    #[test]
    fn socket_depends_on_inventory_content_and_settings() {
        let dir = tempfile::tempdir().unwrap();
        let inv = dir.path().join("inv.yaml");
        std::fs::write(&inv, "a").unwrap();
        let paths = Paths {
            state: dir.path().join("state"),
            cache: dir.path().join("cache"),
        };
        let args = SshArgs {
            concurrency: 32,
            accept_new_host_keys: false,
            connect_timeout: None,
            command_timeout: 600,
        };
        let a = socket_path(&paths, &inv, &args).unwrap();
        assert_eq!(a, socket_path(&paths, &inv, &args).unwrap());
        assert!(a.starts_with(dir.path().join("state/mux")));
        std::fs::write(&inv, "b").unwrap();
        assert_ne!(
            a,
            socket_path(&paths, &inv, &args).unwrap(),
            "an edited inventory gets a new agent"
        );
        let accept = SshArgs {
            accept_new_host_keys: true,
            ..args
        };
        assert_ne!(
            socket_path(&paths, &inv, &accept).unwrap(),
            socket_path(&paths, &inv, &args).unwrap()
        );
    }
}
