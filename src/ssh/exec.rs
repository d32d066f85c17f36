//! Running commands: one channel per command, output split into lines as it arrives and
//! captured whole, exit status, command timeout, optional stdin streaming.

use russh::ChannelMsg;
use tokio::io::{AsyncBufRead, AsyncWriteExt};

use super::{Session, SshError, Stream};

/// Raw result of one remote command (bytes, for binary-safe reads).
#[derive(Debug, Default)]
pub struct RawOutput {
    pub exit_code: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Splits a byte stream into lines across arbitrary chunk boundaries.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feed a chunk; `emit` gets every completed line (without `\n` / `\r\n`).
    pub fn push(&mut self, mut data: &[u8], emit: &mut dyn FnMut(&str)) {
        while let Some(pos) = data.iter().position(|&b| b == b'\n') {
            let (line, rest) = data.split_at(pos);
            if self.partial.is_empty() {
                emit_line(line, emit);
            } else {
                self.partial.extend_from_slice(line);
                let whole = std::mem::take(&mut self.partial);
                emit_line(&whole, emit);
            }
            data = rest.get(1..).unwrap_or_default();
        }
        self.partial.extend_from_slice(data);
    }

    /// Flush a last line that had no newline.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&str)) {
        if !self.partial.is_empty() {
            let whole = std::mem::take(&mut self.partial);
            emit_line(&whole, emit);
        }
    }
}

fn emit_line(line: &[u8], emit: &mut dyn FnMut(&str)) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    emit(&String::from_utf8_lossy(line));
}

/// russh errors in words an operator can act on.
pub fn describe(e: &russh::Error) -> String {
    match e {
        russh::Error::Disconnect
        | russh::Error::SendError
        | russh::Error::HUP
        | russh::Error::KeepaliveTimeout => {
            "connection lost (the host stopped answering or closed the connection)".into()
        }
        other => other.to_string(),
    }
}

/// A command as named in errors: its first line, at most 80 characters (scripts can be long).
pub fn short_label(command: &str) -> String {
    let first = command.trim().lines().next().unwrap_or_default();
    let mut label: String = first.chars().take(80).collect();
    if label.len() < command.trim().len() {
        label.push_str(" …");
    }
    label
}

/// Shell exit code convention for a command killed by a signal.
fn signal_exit_code(sig: &russh::Sig) -> u32 {
    use russh::Sig;
    128 + match sig {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        Sig::USR1 => 10,
        _ => 127,
    }
}

impl Session {
    /// Wrap a shell command to run as root when this login needs sudo.
    pub(crate) fn as_root(&self, command: &str) -> String {
        if self.sudo {
            format!("sudo -n sh -c {}", super::quote::sh_quote(command))
        } else {
            command.to_string()
        }
    }

    /// Whether a failed privileged command failed because sudo wants a password.
    pub(crate) fn sudo_password_error(&self, raw: &RawOutput) -> Option<SshError> {
        let asked = raw.exit_code != 0
            && self.sudo
            && String::from_utf8_lossy(&raw.stderr).contains("a password is required");
        asked.then(|| SshError::SudoPassword {
            host: self.name.clone(),
            user: self.user.clone(),
        })
    }

    /// Run `command` exactly as given on its own channel. `label` names it in a timeout
    /// error. `stdin`, if any, is streamed to the command, then EOF is sent either way.
    pub(crate) async fn exec_raw<R, F>(
        &self,
        label: &str,
        command: &str,
        stdin: Option<R>,
        mut on_line: F,
    ) -> Result<RawOutput, SshError>
    where
        R: AsyncBufRead + Unpin + Send,
        F: FnMut(Stream, &str) + Send,
    {
        let session_err = |reason: String| SshError::Session {
            host: self.name.clone(),
            reason,
        };
        // sshd allows only MaxSessions (default 10) channels per connection; queue beyond.
        let _permit = self
            .channels
            .acquire()
            .await
            .map_err(|e| session_err(e.to_string()))?;
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| session_err(format!("cannot open a channel: {}", describe(&e))))?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| session_err(format!("cannot start `{label}`: {}", describe(&e))))?;
        let (mut reader, writer) = channel.split();

        let feed = async {
            if let Some(mut input) = stdin {
                let mut tx = writer.make_writer();
                // A write error means the command stopped reading (it failed); its exit
                // status and stderr tell why, so the copy error itself is not reported.
                if tokio::io::copy_buf(&mut input, &mut tx).await.is_ok() {
                    let _ = tx.flush().await;
                }
            }
            let _ = writer.eof().await;
        };
        let collect = async {
            let mut raw = RawOutput::default();
            let mut exit: Option<u32> = None;
            let (mut out_lines, mut err_lines) = (LineSplitter::default(), LineSplitter::default());
            while let Some(msg) = reader.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        raw.stdout.extend_from_slice(&data);
                        out_lines.push(&data, &mut |l| on_line(Stream::Stdout, l));
                    }
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        raw.stderr.extend_from_slice(&data);
                        err_lines.push(&data, &mut |l| on_line(Stream::Stderr, l));
                    }
                    ChannelMsg::ExitStatus { exit_status } => exit = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        exit = Some(signal_exit_code(&signal_name))
                    }
                    ChannelMsg::Failure => {
                        return Err(session_err(format!("the host refused to run `{label}`")));
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            out_lines.finish(&mut |l| on_line(Stream::Stdout, l));
            err_lines.finish(&mut |l| on_line(Stream::Stderr, l));
            raw.exit_code = exit.ok_or_else(|| {
                session_err(format!(
                    "connection lost while running `{label}` (no exit status)"
                ))
            })?;
            Ok(raw)
        };
        // Feeding stops as soon as the command is done: a command that exits early (a
        // failed mkdir, say) must not leave us waiting for window space that never comes.
        let both = async {
            tokio::pin!(feed, collect);
            let mut fed = false;
            loop {
                tokio::select! {
                    () = &mut feed, if !fed => fed = true,
                    result = &mut collect => return result,
                }
            }
        };
        match tokio::time::timeout(self.command_timeout, both).await {
            Ok(result) => result,
            Err(_) => {
                // Ask sshd to stop the command, then drop the channel.
                let _ = writer.signal(russh::Sig::TERM).await;
                let _ = writer.close().await;
                Err(SshError::CommandTimeout {
                    host: self.name.clone(),
                    command: label.to_string(),
                    secs: self.command_timeout.as_secs(),
                })
            }
        }
    }

    pub(crate) async fn run_streamed_impl<F>(
        &self,
        command: &str,
        privileged: bool,
        on_line: F,
    ) -> Result<super::Output, SshError>
    where
        F: FnMut(Stream, &str) + Send,
    {
        let wire = if privileged {
            self.as_root(command)
        } else {
            command.to_string()
        };
        let raw = self
            .exec_raw(&short_label(command), &wire, None::<&[u8]>, on_line)
            .await?;
        if privileged && let Some(e) = self.sudo_password_error(&raw) {
            return Err(e);
        }
        Ok(super::Output {
            exit_code: raw.exit_code,
            stdout: String::from_utf8_lossy(&raw.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&raw.stderr).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::LineSplitter;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::default();
        let mut lines = Vec::new();
        for c in chunks {
            s.push(c, &mut |l| lines.push(l.to_string()));
        }
        s.finish(&mut |l| lines.push(l.to_string()));
        lines
    }

    #[test]
    fn lines_across_chunks() {
        assert_eq!(split(&[b"a\nb", b"c\n", b"\nd"]), ["a", "bc", "", "d"]);
        assert_eq!(split(&[b"x\r\n", b"y"]), ["x", "y"]);
        assert_eq!(split(&[b"", b"no newline"]), ["no newline"]);
        assert_eq!(split(&[b"one\n"]), ["one"]);
        assert!(split(&[]).is_empty());
    }

    #[test]
    fn labels_are_short() {
        assert_eq!(super::short_label("echo hi"), "echo hi");
        assert_eq!(
            super::short_label("sh -s <<EOF\nlots\nEOF\n"),
            "sh -s <<EOF …"
        );
        assert_eq!(super::short_label(&"x".repeat(200)).chars().count(), 82);
    }

    #[test]
    fn utf8_split_inside_a_character() {
        let bytes = "é✓\n".as_bytes();
        assert_eq!(split(&[&bytes[..1], &bytes[1..3], &bytes[3..]]), ["é✓"]);
    }
}
