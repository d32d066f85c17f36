//! The host abstraction phases work with: one SSH session, the host's inventory entry, its
//! facts and OS-family traits, and idempotent primitives (files, directories, units) that can
//! report what they would change instead of changing it (dry-run).

use crate::facts::{FACTS_SCRIPT, Facts, MissingFact, epoch_now};
use crate::inventory::Host;
use crate::osfamily::FamilyTraits;
use crate::ssh::{Output, Session, SshConfig, SshError, UploadOutcome};

pub struct Node {
    pub host: Host,
    pub session: Session,
    pub facts: Facts,
    pub traits: Option<FamilyTraits>,
    pub dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("{host}: `{command}` exited {code}: {stderr}")]
    Failed {
        host: String,
        command: String,
        code: u32,
        stderr: String,
    },
    #[error("{host}: unexpected facts output")]
    Facts {
        host: String,
        #[source]
        source: MissingFact,
    },
}

/// The remote side of `Node::snapshot`.
const SNAPSHOT_SCRIPT: &str = include_str!("../templates/scripts/snapshot.sh");

/// What a host has now, for many paths and units at once (one round trip).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Regular files: sha256 and mode.
    pub files: std::collections::HashMap<String, (String, u32)>,
    /// Directories: mode.
    pub dirs: std::collections::HashMap<String, u32>,
    /// Units: enabled and active.
    pub units: std::collections::HashMap<String, bool>,
}

impl Snapshot {
    pub fn file_matches(&self, path: &str, sha256: &str, mode: u32) -> bool {
        self.files
            .get(path)
            .is_some_and(|(s, m)| s == sha256 && *m == mode)
    }

    /// Parse the snapshot script's `F sha mode path`, `D mode path`, `U 0|1 unit` lines.
    pub fn parse(text: &str) -> Snapshot {
        let mut snap = Snapshot::default();
        for line in text.lines() {
            let mut parts = line.splitn(4, ' ');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some("F"), Some(sha), Some(mode), Some(path)) => {
                    if let Ok(m) = u32::from_str_radix(mode, 8) {
                        snap.files.insert(path.to_string(), (sha.to_string(), m));
                    }
                }
                (Some("D"), Some(mode), Some(path), rest) => {
                    let path = match rest {
                        Some(r) => format!("{path} {r}"),
                        None => path.to_string(),
                    };
                    if let Ok(m) = u32::from_str_radix(mode, 8) {
                        snap.dirs.insert(path, m);
                    }
                }
                (Some("U"), Some(up), Some(unit), None) => {
                    snap.units.insert(unit.to_string(), up == "1");
                }
                _ => {}
            }
        }
        snap
    }
}

/// Single-quote a string for a POSIX shell (the SSH engine's quoting, one implementation).
pub use crate::ssh::sh_quote as shell_quote;

impl Node {
    /// Connect and gather facts. `peer` is an address of another host, whose route tells which
    /// interface and source address this host uses inside the cluster.
    pub async fn open(
        host: &Host,
        peer: &str,
        cfg: &SshConfig,
        dry_run: bool,
    ) -> Result<Node, NodeError> {
        let session = Session::connect(&host.name, &host.ssh, host.sudo, cfg).await?;
        let script = script_command(FACTS_SCRIPT, &[peer]);
        let sent = epoch_now();
        let out = session.run(&script).await?;
        let received = epoch_now();
        if !out.success() {
            return Err(NodeError::Failed {
                host: host.name.clone(),
                command: "facts probe".into(),
                code: out.exit_code,
                stderr: last_lines(&out.stderr, 5),
            });
        }
        let facts =
            Facts::parse(&out.stdout, sent, received).map_err(|source| NodeError::Facts {
                host: host.name.clone(),
                source,
            })?;
        let traits = facts.family.map(|f| f.traits());
        session.set_wire(crate::ssh::Wire::choose(facts.has_zstd, facts.has_gzip));
        Ok(Node {
            host: host.clone(),
            session,
            facts,
            traits,
            dry_run,
        })
    }

    pub fn name(&self) -> &str {
        &self.host.name
    }

    /// Run as root; a non-zero exit is an error carrying stderr.
    pub async fn sudo_ok(&self, command: &str) -> Result<Output, NodeError> {
        let out = self.session.sudo(command).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(NodeError::Failed {
                host: self.host.name.clone(),
                command: short(command),
                code: out.exit_code,
                stderr: last_lines(&out.stderr, 5),
            })
        }
    }

    /// Does `path` already have this sha256 and mode?
    pub async fn file_matches(
        &self,
        path: &str,
        sha256: &str,
        mode: u32,
    ) -> Result<bool, NodeError> {
        let q = shell_quote(path);
        let out = self
            .session
            .sudo(&format!(
                "[ -f {q} ] && sha256sum {q} | cut -d' ' -f1 && stat -c %a {q}"
            ))
            .await?;
        let mut lines = out.stdout.lines();
        let (Some(sum), Some(m)) = (lines.next(), lines.next()) else {
            return Ok(false);
        };
        Ok(sum.trim() == sha256 && u32::from_str_radix(m.trim(), 8).ok() == Some(mode))
    }

    /// The state of many files, directories and units in one round trip.
    pub async fn snapshot(
        &self,
        files: &[String],
        dirs: &[String],
        units: &[String],
    ) -> Result<Snapshot, NodeError> {
        let (files, dirs, units) = (files.join("\n"), dirs.join("\n"), units.join("\n"));
        let script = script_command(SNAPSHOT_SCRIPT, &[&files, &dirs, &units]);
        let out = self.sudo_ok(&script).await?;
        Ok(Snapshot::parse(&out.stdout))
    }

    /// Tell the snapshot's quick-check cache the sha256 of files just uploaded (and verified),
    /// so the next run need not read them again.
    pub async fn remember_sums(&self, written: &[(String, String)]) -> Result<(), NodeError> {
        if written.is_empty() {
            return Ok(());
        }
        let paths: Vec<String> = written.iter().map(|(p, _)| shell_quote(p)).collect();
        let shas: Vec<&str> = written.iter().map(|(_, s)| s.as_str()).collect();
        let cmd = format!(
            "mkdir -p /var/lib/director-boot && stat -c '%s %Y %i %n' {} | awk -v shas={} \
             'BEGIN {{ split(shas, h, \" \") }} {{ print $1 \" \" $2 \" \" $3 \" \" h[NR] \" \" substr($0, index($0, $4)) }}' \
             >> /var/lib/director-boot/sha256.cache",
            paths.join(" "),
            shell_quote(&shas.join(" "))
        );
        self.sudo_ok(&cmd).await.map(|_| ())
    }

    /// Would `ensure_file` change anything? (Never writes.)
    pub async fn dry_run_probe(
        &self,
        path: &str,
        data: &[u8],
        mode: u32,
    ) -> Result<bool, NodeError> {
        let sha = crate::ssh::sha256_hex(data);
        Ok(!self.file_matches(path, &sha, mode).await?)
    }

    /// Make `path` hold `data` with `mode`; true when it changed (or would, in dry-run).
    pub async fn ensure_file(&self, path: &str, data: &[u8], mode: u32) -> Result<bool, NodeError> {
        if self.dry_run {
            return self.dry_run_probe(path, data, mode).await;
        }
        Ok(self.session.upload(data, path, mode).await? == UploadOutcome::Written)
    }
}

/// A shell command that runs `script` (fed on stdin, so nothing is left on the host) with
/// `args`, each quoted.
pub fn script_command(script: &str, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    let sep = if args.is_empty() { "" } else { " -- " };
    format!(
        "sh -s{sep}{} <<'DIRECTOR_BOOT_EOF'\n{script}DIRECTOR_BOOT_EOF\n",
        args.join(" ")
    )
}

/// A command shortened for messages: its first line, at most 100 characters.
pub fn short(command: &str) -> String {
    let first = command.trim().lines().next().unwrap_or("");
    let mut s: String = first.chars().take(100).collect();
    if s.len() < command.trim().len() {
        s.push_str(" ...");
    }
    s
}

/// The last `n` non-empty lines of a command's output, for error messages.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::script_command;

    #[test]
    fn a_script_runs_over_stdin_with_quoted_arguments() {
        assert_eq!(
            script_command("echo \"$1\"\n", &["a b", "it's"]),
            "sh -s -- 'a b' 'it'\\''s' <<'DIRECTOR_BOOT_EOF'\necho \"$1\"\nDIRECTOR_BOOT_EOF\n"
        );
        assert_eq!(
            script_command("true\n", &[]),
            "sh -s <<'DIRECTOR_BOOT_EOF'\ntrue\nDIRECTOR_BOOT_EOF\n"
        );
    }

    use super::*;

    #[test]
    fn parses_snapshots() {
        let s = Snapshot::parse(
            "F abc 644 /etc/a b\nD 700 /var/lib/etcd\nU 1 etcd\nU 0 kubelet\njunk\n",
        );
        assert!(s.file_matches("/etc/a b", "abc", 0o644));
        assert!(!s.file_matches("/etc/a b", "abc", 0o600));
        assert_eq!(s.dirs["/var/lib/etcd"], 0o700);
        assert!(s.units["etcd"]);
        assert!(!s.units["kubelet"]);
    }

    #[test]
    fn keeps_last_lines() {
        assert_eq!(last_lines("a\n\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("", 3), "");
    }
}
