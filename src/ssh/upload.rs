//! Verified, atomic, idempotent file uploads and file reads, as root.
//!
//! Data goes over an exec channel's stdin into `cat` (through `sudo -n` for non-root logins),
//! so root and sudo logins share one code path and nothing needs SFTP on the host.

use std::path::Path;

use tokio::io::{AsyncBufRead, BufReader};

use super::exec::RawOutput;
use super::quote::sh_quote;
use super::wire::{MIN_COMPRESSED_SIZE, Wire, compressed};
use super::{Session, SshError, UploadOutcome};

/// Stdin buffer for uploads: large enough to fill SSH packets (32 KiB) without many syscalls.
const CHUNK: usize = 256 * 1024;

/// Exit code and marker our scripts use for "the file does not exist".
const MISSING_EXIT: u32 = 3;
const MISSING_MARK: &str = "director-boot: no such file";

pub use crate::hash::sha256_hex;

/// sha256 of a local file, off the async threads (the file may be hundreds of MB), read once
/// per run however many hosts get it.
async fn sha256_file(path: &Path) -> std::io::Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || crate::hash::sha256_file_memo(&path))
        .await
        .map_err(std::io::Error::other)?
}

/// Split an absolute remote path into (directory, file name).
fn split_remote(remote: &str) -> Option<(&str, &str)> {
    if !remote.starts_with('/') || remote.ends_with('/') {
        return None;
    }
    let (dir, base) = remote.rsplit_once('/')?;
    if base.is_empty() || base == "." || base == ".." {
        return None;
    }
    Some((if dir.is_empty() { "/" } else { dir }, base))
}

/// What the host holds at the target path.
#[derive(Debug, PartialEq, Eq)]
enum Current {
    Missing,
    File { sha256: String, mode: u32 },
}

fn parse_current(stdout: &str) -> Option<Current> {
    let line = stdout.trim();
    if line == "missing" {
        return Some(Current::Missing);
    }
    let (sha, mode) = line.split_once(' ')?;
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(Current::File {
        sha256: sha.to_ascii_lowercase(),
        mode: u32::from_str_radix(mode.trim(), 8).ok()?,
    })
}

/// Script printing `missing` or `<sha256> <octal mode>` for `remote`.
fn inspect_script(remote: &str) -> String {
    format!(
        "f={f}; if [ -f \"$f\" ]; then s=$(sha256sum < \"$f\") || exit 1; \
         m=$(stat -c %a \"$f\") || exit 1; printf '%s %s\\n' \"${{s%% *}}\" \"$m\"; \
         elif [ -e \"$f\" ]; then echo \"$f exists but is not a regular file\" >&2; exit 1; \
         else echo missing; fi",
        f = sh_quote(remote)
    )
}

/// sha256 of stdin as `<hex> ...`: OpenSSL's uses the CPU's SHA instructions (about 4x
/// coreutils' on the hundreds of MB an init writes per host); coreutils where it is missing.
const HASHER: &str =
    "if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r; else sha256sum; fi";

/// Script that writes stdin (through `decoder`: `cat`, or a decompressor) to a temp file
/// next to `remote`, fsyncs, sets the mode, checks the sha256 of what was written, and only
/// then renames it over `remote`. On any failure the temp file is removed and the target is
/// untouched.
fn write_script(
    remote: &str,
    dir: &str,
    base: &str,
    mode: u32,
    sha256: &str,
    decoder: &str,
) -> String {
    format!(
        "set -e; d={d}; f={f}; mkdir -p \"$d\"; \
         tmp=$(mktemp \"$d\"/{tmpl}); \
         trap 'rm -f \"$tmp\"' EXIT; trap 'rm -f \"$tmp\"; exit 1' HUP INT TERM PIPE; \
         {decoder} > \"$tmp\"; \
         sync \"$tmp\" 2>/dev/null || sync; \
         chmod {mode:o} \"$tmp\"; \
         s=$({HASHER} < \"$tmp\"); s=${{s%% *}}; \
         if [ \"$s\" != {sha} ]; then echo \"checksum mismatch after writing: host has $s, expected {sha}\" >&2; exit 1; fi; \
         mv -f \"$tmp\" \"$f\"; trap - EXIT; \
         sync \"$d\" 2>/dev/null || true",
        d = sh_quote(dir),
        f = sh_quote(remote),
        tmpl = sh_quote(&format!(".{base}.director-boot.XXXXXX")),
        mode = mode & 0o7777,
        sha = sh_quote(sha256),
    )
}

/// One small file of a batch: where it goes, its bytes, its mode.
pub struct SmallFile<'a> {
    pub remote: &'a str,
    pub data: &'a [u8],
    pub mode: u32,
}

/// Here-document delimiter of a batch; base64 never produces `_`, so no content line is it.
const BATCH_EOF: &str = "DIRECTOR_BOOT_EOF";

/// The script of a batch, sent as stdin to `sh -s` (never on a command line, where `ps` would
/// show keys): for each file the same write, fsync, checksum, rename as [`write_script`].
fn batch_script(files: &[SmallFile<'_>]) -> Result<String, String> {
    use base64::Engine;
    let mut s = format!(
        "set -e; t=; trap 'rm -f \"$t\"' EXIT; trap 'exit 1' HUP INT TERM PIPE\n\
         put() {{ f=$1; d=${{f%/*}}; [ -n \"$d\" ] || d=/; b=${{f##*/}}; \
         if [ -e \"$f\" ] && [ ! -f \"$f\" ]; then echo \"$f exists but is not a regular file\" >&2; exit 1; fi; \
         mkdir -p \"$d\"; \
         t=$(mktemp \"$d/.$b.director-boot.XXXXXX\"); base64 -d > \"$t\"; \
         sync \"$t\" 2>/dev/null || sync; chmod \"$2\" \"$t\"; \
         s=$({HASHER} < \"$t\"); s=${{s%% *}}; \
         if [ \"$s\" != \"$3\" ]; then echo \"$f: checksum mismatch after writing: host has $s, expected $3\" >&2; exit 1; fi; \
         mv -f \"$t\" \"$f\"; t=; }}\n"
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    for f in files {
        split_remote(f.remote).ok_or_else(|| format!("{}: not an absolute file path", f.remote))?;
        s.push_str(&format!(
            "put {} {:o} {} <<'{BATCH_EOF}'\n",
            sh_quote(f.remote),
            f.mode & 0o7777,
            sha256_hex(f.data)
        ));
        let text = b64.encode(f.data);
        for line in text.as_bytes().chunks(76) {
            s.push_str(std::str::from_utf8(line).unwrap_or_default());
            s.push('\n');
        }
        s.push_str(BATCH_EOF);
        s.push('\n');
    }
    Ok(s)
}

impl Session {
    fn upload_err(&self, remote: &str, reason: impl Into<String>) -> SshError {
        SshError::Upload {
            host: self.name.clone(),
            remote: remote.to_string(),
            reason: reason.into(),
        }
    }

    /// Run an internal script as root (`sh -c`, so the login shell does not matter).
    async fn root_script<R: AsyncBufRead + Unpin + Send>(
        &self,
        label: &str,
        script: &str,
        stdin: Option<R>,
    ) -> Result<RawOutput, SshError> {
        let command = if self.sudo {
            self.as_root(script)
        } else {
            format!("sh -c {}", sh_quote(script))
        };
        let raw = self.exec_raw(label, &command, stdin, |_, _| {}).await?;
        match self.sudo_password_error(&raw) {
            Some(e) => Err(e),
            None => Ok(raw),
        }
    }

    async fn current(&self, remote: &str) -> Result<Current, SshError> {
        let raw = self
            .root_script(
                &format!("inspect {remote}"),
                &inspect_script(remote),
                None::<&[u8]>,
            )
            .await?;
        let stdout = String::from_utf8_lossy(&raw.stdout);
        if raw.exit_code != 0 {
            return Err(self.upload_err(remote, stderr_reason(&raw)));
        }
        parse_current(&stdout)
            .ok_or_else(|| self.upload_err(remote, format!("unexpected answer: {stdout:?}")))
    }

    /// Whether `remote` already holds exactly this content and mode.
    async fn unchanged(&self, remote: &str, sha256: &str, mode: u32) -> Result<bool, SshError> {
        Ok(matches!(
            self.current(remote).await?,
            Current::File { sha256: have, mode: have_mode } if have == sha256 && have_mode == mode & 0o7777
        ))
    }

    /// Upload from `data` whose sha256 is `sha256`; idempotent and verified.
    pub(crate) async fn upload_stream<R: AsyncBufRead + Unpin + Send>(
        &self,
        data: R,
        sha256: &str,
        remote: &str,
        mode: u32,
    ) -> Result<UploadOutcome, SshError> {
        if self.unchanged(remote, sha256, mode).await? {
            return Ok(UploadOutcome::Unchanged);
        }
        self.write_stream(data, sha256, remote, mode, Wire::Plain)
            .await
    }

    /// Write `data` (encoded as `wire`) to `remote`; the host decodes and verifies `sha256`.
    async fn write_stream<R: AsyncBufRead + Unpin + Send>(
        &self,
        data: R,
        sha256: &str,
        remote: &str,
        mode: u32,
        wire: Wire,
    ) -> Result<UploadOutcome, SshError> {
        let (dir, base) = split_remote(remote)
            .ok_or_else(|| self.upload_err(remote, "the target must be an absolute file path"))?;
        let mode = mode & 0o7777;
        let raw = self
            .root_script(
                &format!("upload {remote}"),
                &write_script(remote, dir, base, mode, sha256, wire.decoder()),
                Some(data),
            )
            .await?;
        if raw.exit_code != 0 {
            return Err(self.upload_err(remote, stderr_reason(&raw)));
        }
        Ok(UploadOutcome::Written)
    }

    /// Write several small files in one round trip (each verified and renamed into place as
    /// [`Session::upload`] does; the caller has already found that they differ).
    pub(crate) async fn upload_many_impl(&self, files: &[SmallFile<'_>]) -> Result<(), SshError> {
        let Some(first) = files.first() else {
            return Ok(());
        };
        let label = if files.len() == 1 {
            first.remote.to_string()
        } else {
            format!("{} files", files.len())
        };
        let script = batch_script(files).map_err(|e| self.upload_err(&label, e))?;
        let raw = self
            .root_script(
                &format!("upload {label}"),
                "exec sh -s",
                Some(script.as_bytes()),
            )
            .await?;
        if raw.exit_code != 0 {
            return Err(self.upload_err(&label, stderr_reason(&raw)));
        }
        Ok(())
    }

    pub(crate) async fn upload_impl(
        &self,
        data: &[u8],
        remote: &str,
        mode: u32,
    ) -> Result<UploadOutcome, SshError> {
        self.upload_stream(data, &sha256_hex(data), remote, mode)
            .await
    }

    pub(crate) async fn upload_file_impl(
        &self,
        local: &Path,
        remote: &str,
        mode: u32,
    ) -> Result<UploadOutcome, SshError> {
        let local_err = |e: std::io::Error| {
            self.upload_err(remote, format!("cannot read {}: {e}", local.display()))
        };
        // Two passes: the hash is needed up front for the idempotence check and the
        // on-host verification; neither pass holds more than one buffer in memory.
        let sha = sha256_file(local).await.map_err(local_err)?;
        if self.unchanged(remote, &sha, mode).await? {
            return Ok(UploadOutcome::Unchanged);
        }
        // Large files go compressed when the host can decode them: compressed once per file
        // (cached by sha256), streamed from that copy to every host.
        let size = tokio::fs::metadata(local).await.map_err(local_err)?.len();
        let wire = self.wire();
        let packed = if wire != Wire::Plain && size >= MIN_COMPRESSED_SIZE {
            match compressed(local, &sha, wire).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(host = %self.name, "compression failed, sending as is: {e}");
                    None
                }
            }
        } else {
            None
        };
        // A cached copy another run's pruning just removed: the file goes as it is.
        let opened = match &packed {
            Some(p) => tokio::fs::File::open(p).await.ok().map(|f| (f, wire)),
            None => None,
        };
        let (file, wire) = match opened {
            Some(fw) => fw,
            None => (
                tokio::fs::File::open(local).await.map_err(local_err)?,
                Wire::Plain,
            ),
        };
        self.write_stream(
            BufReader::with_capacity(CHUNK, file),
            &sha,
            remote,
            mode,
            wire,
        )
        .await
    }

    pub(crate) async fn read_file_impl(&self, remote: &str) -> Result<Option<Vec<u8>>, SshError> {
        let script = format!(
            "f={f}; if [ ! -e \"$f\" ]; then echo '{MISSING_MARK}' >&2; exit {MISSING_EXIT}; fi; exec cat -- \"$f\"",
            f = sh_quote(remote)
        );
        let raw = self
            .root_script(&format!("read {remote}"), &script, None::<&[u8]>)
            .await?;
        if raw.exit_code == MISSING_EXIT
            && String::from_utf8_lossy(&raw.stderr).contains(MISSING_MARK)
        {
            return Ok(None);
        }
        if raw.exit_code != 0 {
            return Err(SshError::Session {
                host: self.name.clone(),
                reason: format!("cannot read {remote}: {}", stderr_reason(&raw)),
            });
        }
        Ok(Some(raw.stdout))
    }
}

fn stderr_reason(raw: &RawOutput) -> String {
    let err = String::from_utf8_lossy(&raw.stderr);
    let err = err.trim();
    if err.is_empty() {
        format!("exit status {}", raw.exit_code)
    } else {
        format!("{err} (exit status {})", raw.exit_code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths() {
        assert_eq!(split_remote("/etc/x.conf"), Some(("/etc", "x.conf")));
        assert_eq!(split_remote("/x"), Some(("/", "x")));
        assert_eq!(split_remote("rel/x"), None);
        assert_eq!(split_remote("/etc/"), None);
        assert_eq!(split_remote("/etc/.."), None);
    }

    #[test]
    fn current_state_answers() {
        assert_eq!(parse_current("missing\n"), Some(Current::Missing));
        let sha = sha256_hex(b"");
        assert_eq!(
            parse_current(&format!("{sha} 644\n")),
            Some(Current::File {
                sha256: sha.clone(),
                mode: 0o644
            })
        );
        assert_eq!(parse_current("garbage"), None);
        assert_eq!(parse_current(&format!("{sha} 9z")), None);
    }

    #[test]
    fn known_sha256() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// The scripts run here under /bin/sh exactly as they would on a host.
    #[test]
    fn scripts_work_under_sh() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("new dir/it's.conf");
        let target = target.to_str().unwrap();
        let (d, b) = split_remote(target).unwrap();
        let run = |script: &str, input: &[u8]| {
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(input).unwrap();
            child.wait_with_output().unwrap()
        };
        let out = run(&inspect_script(target), b"");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "missing\n");
        let out = run(
            &write_script(target, d, b, 0o640, &sha256_hex(b"hi"), "cat"),
            b"hi",
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(&inspect_script(target), b"");
        assert_eq!(
            parse_current(&String::from_utf8_lossy(&out.stdout)),
            Some(Current::File {
                sha256: sha256_hex(b"hi"),
                mode: 0o640
            })
        );
        // A wrong checksum leaves the target alone and no temp file behind.
        let out = run(
            &write_script(target, d, b, 0o640, &sha256_hex(b"x"), "cat"),
            b"hi!",
        );
        assert!(!out.status.success());
        assert_eq!(std::fs::read(target).unwrap(), b"hi");
        assert_eq!(std::fs::read_dir(d).unwrap().count(), 1);
    }
}
