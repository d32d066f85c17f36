//! Small host helpers: running commands, processes by PID + start time, mount table.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use super::error::LabError;

fn describe<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.as_ref().to_string_lossy());
    }
    s
}

/// Run a command to completion; its stdout on success, an error with its stderr otherwise.
pub async fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String, LabError> {
    let out = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| LabError::Command {
            command: describe(program, args),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(LabError::Command {
            command: describe(program, args),
            detail: format!("{} ({})", stderr.trim(), out.status),
        })
    }
}

/// Whether we run as root (effective UID 0), read from /proc to avoid a libc dependency.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// A process's start time (clock ticks since boot) and whether it is a zombie, from
/// /proc/PID/stat. The comm field may hold spaces and parentheses, so parse after the last ')'.
fn stat(pid: u32) -> Option<(u64, bool)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

pub fn parse_stat(text: &str) -> Option<(u64, bool)> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: field 3 (state) is fields[0], field 22 (starttime) is fields[19].
    let state = *fields.first()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(start, _)| start)
}

/// True when `pid` is alive and is still the process we started (same start time).
pub fn alive(pid: u32, start: u64) -> bool {
    matches!(stat(pid), Some((s, zombie)) if s == start && !zombie)
}

pub async fn signal(pid: u32, sig: &str) -> Result<(), LabError> {
    run("kill", &["-s", sig, &pid.to_string()])
        .await
        .map(|_| ())
}

/// Wait until the process is gone, at most `limit`; true when it is.
pub async fn wait_gone(pid: u32, start: u64, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while alive(pid, start) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    true
}

/// Undo the octal escapes (`\040` for a space, ...) of /proc/self/mountinfo.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(oct) = b.get(i + 1..i + 4)
            && oct.iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = oct
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq)]
pub struct MountEntry {
    pub root: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub super_options: String,
}

pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(MountEntry {
                root: unescape(l.get(3)?),
                mount_point: PathBuf::from(unescape(l.get(4)?)),
                fs_type: r.first()?.to_string(),
                super_options: r.get(2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

pub fn mounts() -> Result<Vec<MountEntry>, LabError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(LabError::io("/proc/self/mountinfo"))?;
    Ok(parse_mountinfo(&text))
}

pub fn is_mount_point(path: &Path) -> Result<bool, LabError> {
    Ok(mounts()?.iter().any(|m| m.mount_point == path))
}

/// Mount points at or below `dir`, deepest (last mounted) first: the order to unmount them.
pub fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>, LabError> {
    let mut found: Vec<PathBuf> = mounts()?
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect();
    // mountinfo lists in mount order: reversing unmounts stacked mounts top-down.
    found.reverse();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    Ok(found)
}

/// Unmount every mount at or below `dir`; a busy one is detached lazily as a last resort.
pub async fn unmount_all_under(dir: &Path) -> Result<(), LabError> {
    for _round in 0..8 {
        let list = mounts_under(dir)?;
        if list.is_empty() {
            return Ok(());
        }
        for m in list {
            if run("umount", &[m.as_os_str()]).await.is_err() {
                let _ = run("umount", &[OsStr::new("-l"), m.as_os_str()]).await;
            }
        }
    }
    let left = mounts_under(dir)?;
    if left.is_empty() {
        Ok(())
    } else {
        Err(LabError::Invalid(format!(
            "cannot unmount {}",
            left.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// The last `lines` lines of a file, for error messages (e.g. a node's console log).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let line =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some((987654, false)));
        let zombie = "7 (x) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0";
        assert_eq!(parse_stat(zombie), Some((55, true)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn parses_mountinfo() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                    90 23 0:50 / /tmp/a\\040b/root rw - overlay overlay rw,lowerdir=/x\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].fs_type, "cgroup");
        assert_eq!(m[0].super_options, "rw,cpu");
        assert_eq!(m[1].mount_point, PathBuf::from("/tmp/a b/root"));
    }

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id();
        let start = start_time(me);
        assert!(start.is_some());
        assert!(alive(me, start.unwrap_or(0)));
        assert!(!alive(me, start.unwrap_or(0) + 1));
    }
}
