//! Host prerequisites of the lab: checked on every `up`, missing packages installed with
//! apt-get (saying so).

use std::path::Path;

use super::error::LabError;
use super::sys::run;

/// (program, Debian package providing it).
const NEEDED: &[(&str, &str)] = &[
    ("debootstrap", "debootstrap"),
    ("systemd-nspawn", "systemd-container"),
    ("ssh-keygen", "openssh-client"),
    ("ssh", "openssh-client"),
    ("ip", "iproute2"),
    ("setsid", "util-linux"),
    ("mount", "mount"),
];

fn on_path(program: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .any(|dir| Path::new(dir).join(program).is_file())
}

/// The packages to install for the programs that are missing.
pub fn missing_packages(present: impl Fn(&str) -> bool) -> Vec<&'static str> {
    let mut pkgs: Vec<&'static str> = NEEDED
        .iter()
        .filter(|(prog, _)| !present(prog))
        .map(|(_, pkg)| *pkg)
        .collect();
    pkgs.dedup();
    pkgs
}

/// inotify instances one booted node uses (systemd, journald, logind, udev-less services...):
/// about 7 were seen; with room for kubelet and containerd later.
const INOTIFY_PER_NODE: u64 = 16;
const INOTIFY_INSTANCES: &str = "/proc/sys/fs/inotify/max_user_instances";

/// The per-user inotify instance limit needed for `nodes` machines: every node's processes
/// run as the host's root, and the default of 128 stops the 18th or so node's systemd
/// ("Failed to create inotify object: Too many open files").
pub fn inotify_instances_needed(nodes: u32) -> u64 {
    256 + INOTIFY_PER_NODE * u64::from(nodes)
}

/// Raise (never lower) the host's inotify instance limit, saying so.
fn ensure_inotify(nodes: u32, say: &dyn Fn(&str)) -> Result<(), LabError> {
    let current: u64 = std::fs::read_to_string(INOTIFY_INSTANCES)
        .map_err(LabError::io(INOTIFY_INSTANCES))?
        .trim()
        .parse()
        .unwrap_or(0);
    let needed = inotify_instances_needed(nodes);
    if current < needed {
        say(&format!(
            "lab: raising fs.inotify.max_user_instances from {current} to {needed} for {nodes} \
             systemd machines (until reboot)"
        ));
        std::fs::write(INOTIFY_INSTANCES, needed.to_string())
            .map_err(LabError::io(INOTIFY_INSTANCES))?;
    }
    Ok(())
}

pub async fn ensure(nodes: u32, say: &dyn Fn(&str)) -> Result<(), LabError> {
    if !super::sys::is_root() {
        return Err(LabError::NotRoot);
    }
    let missing = missing_packages(on_path);
    if !missing.is_empty() {
        say(&format!(
            "lab: installing missing host packages: {}",
            missing.join(" ")
        ));
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend(missing.iter().copied());
        if run("apt-get", &args).await.is_err() {
            // A fresh machine may have no package lists yet.
            run("apt-get", &["update"]).await?;
            run("apt-get", &args).await?;
        }
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems.contains("overlay") {
        run("modprobe", &["overlay"]).await?;
    }
    ensure_inotify(nodes, say)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_programs_to_packages() {
        assert!(missing_packages(|_| true).is_empty());
        assert_eq!(
            missing_packages(|p| p != "systemd-nspawn" && p != "ssh-keygen" && p != "ssh"),
            vec!["systemd-container", "openssh-client"]
        );
        assert!(inotify_instances_needed(20) > 128 + 7 * 20);
        assert!(inotify_instances_needed(64) >= inotify_instances_needed(1));
    }
}
