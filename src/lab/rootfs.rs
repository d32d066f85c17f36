//! The base root filesystem shared by every node (the overlay's lower layer): built once with
//! debootstrap into a temp dir, prepared, stamped with the recipe's hash, then renamed into
//! place, so a half-built base is never used and a changed recipe rebuilds it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use sha2::Digest;

use super::error::LabError;
use super::sys;

const SUITE: &str = "bookworm";
/// Bump to force a rebuild when the preparation steps (not just files) change.
/// 2: keepalived and haproxy installed and disabled.
/// 3: firewalld (disabled; `lab up --firewalld` enables it per node) and zstd.
/// 4: pam_systemd left out of sessions (firewalld's polkitd pulls libpam-systemd in).
const RECIPE_VERSION: u32 = 4;
/// What a typical small server has; nothing Kubernetes-specific (containerd and kubelet are
/// uploaded by `init`, as on real hosts).
const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "iproute2",
    "iputils-ping",
    "procps",
    "sudo",
    "kmod",
    "iptables",
    "ca-certificates",
    "less",
    "curl",
    "netbase",
    "ethtool",
    "psmisc",
    "xz-utils",
    "vim-tiny",
    // The host packages `init` installs on control planes for the highly available endpoint
    // (`dnf install keepalived haproxy` on RHEL, apt on Debian). Lab nodes have no package
    // mirror (each lives in its own network namespace), so the base carries them already, as
    // an image with them preinstalled would; init sees them installed and skips the install.
    "keepalived",
    "haproxy",
    // The decompressor uploads use (gzip is the fallback on hosts without it).
    "zstd",
];
/// Installed with apt in the finished chroot (with /proc mounted): polkitd, which firewalld
/// needs, fails to configure inside debootstrap's own package run. RHEL-family hosts run
/// firewalld; `lab up --firewalld` turns it on per node so init's port opening is tested here.
const LATE_PACKAGES: &[&str] = &["firewalld"];

/// Units of those packages that must not start at boot: only `init` configures and starts
/// them, on control planes only (a worker running haproxy's sample config, or keepalived,
/// would be wrong).
const DISABLED_UNITS: &[&str] = &["keepalived.service", "haproxy.service", "firewalld.service"];
const STAMP: &str = ".director-boot-lab-recipe";

/// A file the recipe puts into the base: (path inside the root, contents, mode).
struct BaseFile {
    path: &'static str,
    contents: &'static str,
    mode: u32,
}

const BASE_FILES: &[BaseFile] = &[
    BaseFile {
        path: "usr/local/lib/director-boot-lab/node-prep.sh",
        contents: include_str!("../../templates/lab/node-prep.sh"),
        mode: 0o755,
    },
    BaseFile {
        path: "etc/systemd/system/lab-node-prep.service",
        contents: include_str!("../../templates/lab/lab-node-prep.service"),
        mode: 0o644,
    },
    BaseFile {
        path: "usr/local/lib/director-boot-lab/kill-pods.sh",
        contents: include_str!("../../templates/lab/kill-pods.sh"),
        mode: 0o755,
    },
    BaseFile {
        path: "etc/systemd/system/lab-kill-pods.service",
        contents: include_str!("../../templates/lab/lab-kill-pods.service"),
        mode: 0o644,
    },
    BaseFile {
        path: "etc/systemd/system.conf.d/director-boot-lab.conf",
        contents: include_str!("../../templates/lab/system.conf"),
        mode: 0o644,
    },
    BaseFile {
        path: "etc/ssh/sshd_config.d/director-boot-lab.conf",
        contents: include_str!("../../templates/lab/sshd.conf"),
        mode: 0o644,
    },
    BaseFile {
        path: "etc/sudoers.d/ops",
        contents: include_str!("../../templates/lab/sudoers-ops"),
        mode: 0o440,
    },
];

/// Units enabled in the base: (unit, target that wants it).
const ENABLED_UNITS: &[(&str, &str)] = &[
    ("lab-node-prep.service", "sysinit.target"),
    ("lab-kill-pods.service", "multi-user.target"),
];

/// The non-root user with passwordless sudo.
pub const OPS_USER: &str = "ops";

/// Hash of everything that defines the base; a different stamp means rebuild.
pub fn recipe_stamp() -> String {
    let mut h = sha2::Sha256::new();
    h.update(format!(
        "v{RECIPE_VERSION} {SUITE} {} {}\n",
        PACKAGES.join(","),
        LATE_PACKAGES.join(",")
    ));
    for f in BASE_FILES {
        h.update(format!("{} {:o} {}\n", f.path, f.mode, f.contents.len()));
        h.update(f.contents);
    }
    for (unit, target) in ENABLED_UNITS {
        h.update(format!("enable {unit} {target}\n"));
    }
    for unit in DISABLED_UNITS {
        h.update(format!("disable {unit}\n"));
    }
    hex::encode(h.finalize())
}

/// One directory per recipe: labs built by other versions of director-boot on this machine
/// keep their own base instead of rebuilding it back and forth.
pub fn base_dir(cache: &Path) -> PathBuf {
    let stamp = recipe_stamp();
    cache
        .join("lab")
        .join(format!("base-{SUITE}-{}", &stamp[..12]))
}

pub fn is_current(base: &Path) -> bool {
    std::fs::read_to_string(base.join(STAMP))
        .map(|s| s.trim() == recipe_stamp())
        .unwrap_or(false)
}

/// The base root filesystem, built when missing or stale. `in_use` forbids replacing a base
/// that running nodes have as their lower layer.
pub async fn ensure(cache: &Path, in_use: bool, say: &dyn Fn(&str)) -> Result<PathBuf, LabError> {
    let base = base_dir(cache);
    if is_current(&base) {
        return Ok(base);
    }
    if base.exists() && in_use {
        return Err(LabError::Invalid(format!(
            "the lab's base root filesystem recipe changed, but this lab's nodes still use {}; \
             run `director-boot lab down` first",
            base.display()
        )));
    }
    let parent = cache.join("lab");
    std::fs::create_dir_all(&parent).map_err(LabError::io(&parent))?;
    let building = parent.join(format!("base-{SUITE}.building-{}", std::process::id()));
    remove_stale_builds(&parent)?;
    say(&format!(
        "lab: building the base root filesystem (debootstrap {SUITE}: one to three minutes) in {}",
        base.display()
    ));
    let started = std::time::Instant::now();
    let result = async {
        debootstrap(&building, &parent.join("debootstrap.log")).await?;
        install_late(&building, &parent.join("apt.log")).await?;
        prepare(&building).await?;
        std::fs::write(building.join(STAMP), recipe_stamp())
            .map_err(LabError::io(building.join(STAMP)))
    }
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&building);
        return Err(e);
    }
    if base.exists() {
        let old = parent.join(format!("base-{SUITE}.old-{}", std::process::id()));
        std::fs::rename(&base, &old).map_err(LabError::io(&base))?;
        std::fs::remove_dir_all(&old).map_err(LabError::io(&old))?;
    }
    std::fs::rename(&building, &base).map_err(LabError::io(&base))?;
    say(&format!(
        "lab: base root filesystem ready in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(base)
}

/// Leftovers of interrupted builds (their builder PID is gone).
fn remove_stale_builds(parent: &Path) -> Result<(), LabError> {
    let entries = std::fs::read_dir(parent).map_err(LabError::io(parent))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .rsplit_once(".building-")
            .or_else(|| name.rsplit_once(".old-"))
            .and_then(|(_, p)| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && (pid == std::process::id() || sys::start_time(pid).is_none())
        {
            std::fs::remove_dir_all(e.path()).map_err(LabError::io(e.path()))?;
        }
    }
    Ok(())
}

async fn debootstrap(dir: &Path, log: &Path) -> Result<(), LabError> {
    let log_file = std::fs::File::create(log).map_err(LabError::io(log))?;
    let log_err = log_file.try_clone().map_err(LabError::io(log))?;
    let mut cmd = tokio::process::Command::new("debootstrap");
    cmd.arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(SUITE)
        .arg(dir);
    // The default mirror is debootstrap's own; a local mirror can be named.
    if let Ok(mirror) = std::env::var("DIRECTOR_BOOT_LAB_MIRROR") {
        cmd.arg(mirror);
    }
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| LabError::Command {
            command: "debootstrap".into(),
            detail: e.to_string(),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(LabError::Command {
            command: format!("debootstrap {SUITE} {}", dir.display()),
            detail: format!(
                "{status}; last lines of {}:\n{}",
                log.display(),
                sys::tail(log, 15)
            ),
        })
    }
}

/// `apt-get install` LATE_PACKAGES in the new root, /proc mounted for their maintainer scripts;
/// nothing is started (no systemd runs in the chroot).
async fn install_late(root: &Path, log: &Path) -> Result<(), LabError> {
    let proc_dir = root.join("proc");
    let (root_s, proc_s) = (root.display().to_string(), proc_dir.display().to_string());
    sys::run("mount", &["-t", "proc", "proc", proc_s.as_str()]).await?;
    let script = format!(
        "export DEBIAN_FRONTEND=noninteractive; apt-get install -y --no-install-recommends {} >{} 2>&1 || {{ tail -20 {}; exit 1; }}",
        LATE_PACKAGES.join(" "),
        "/var/log/director-boot-late-packages.log",
        "/var/log/director-boot-late-packages.log",
    );
    let result = sys::run("chroot", &[root_s.as_str(), "sh", "-c", script.as_str()]).await;
    let _ = sys::run("umount", &[proc_s.as_str()]).await;
    let copied = root.join("var/log/director-boot-late-packages.log");
    let _ = std::fs::copy(&copied, log);
    result?;
    // polkitd brings libpam-systemd, which moves SSH sessions out of ssh.service into logind
    // scopes; lab nodes keep them in ssh.service (as before firewalld was in the base), where
    // stopping or killing sshd cuts them: the lab tests' way to take a node off the network.
    let session = root.join("etc/pam.d/common-session");
    if let Ok(text) = std::fs::read_to_string(&session) {
        let kept: String = text
            .lines()
            .filter(|l| !l.contains("pam_systemd.so"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&session, kept).map_err(LabError::io(&session))?;
    }
    let profile = root.join("usr/share/pam-configs/systemd");
    if profile.exists() {
        std::fs::remove_file(&profile).map_err(LabError::io(&profile))?;
    }
    Ok(())
}

fn write_file(root: &Path, rel: &str, contents: &str, mode: u32) -> Result<(), LabError> {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(LabError::io(dir))?;
    }
    std::fs::write(&path, contents).map_err(LabError::io(&path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .map_err(LabError::io(&path))
}

/// Turn a fresh debootstrap tree into the lab's base.
async fn prepare(root: &Path) -> Result<(), LabError> {
    // Every node must get its own host keys and machine-id: none may come from the base.
    let ssh_dir = root.join("etc/ssh");
    for e in std::fs::read_dir(&ssh_dir)
        .map_err(LabError::io(&ssh_dir))?
        .flatten()
    {
        if e.file_name().to_string_lossy().starts_with("ssh_host_") {
            std::fs::remove_file(e.path()).map_err(LabError::io(e.path()))?;
        }
    }
    write_file(root, "etc/machine-id", "", 0o444)?;
    let dbus_id = root.join("var/lib/dbus/machine-id");
    if dbus_id.symlink_metadata().is_ok() {
        std::fs::remove_file(&dbus_id).map_err(LabError::io(&dbus_id))?;
    }
    if let Some(dir) = dbus_id.parent()
        && dir.is_dir()
    {
        std::os::unix::fs::symlink("/etc/machine-id", &dbus_id).map_err(LabError::io(&dbus_id))?;
    }
    // The non-root user for sudo tests.
    let root_s = root.display().to_string();
    sys::run(
        "chroot",
        &[
            root_s.as_str(),
            "useradd",
            "--create-home",
            "--shell",
            "/bin/bash",
            OPS_USER,
        ],
    )
    .await?;
    for f in BASE_FILES {
        write_file(root, f.path, f.contents, f.mode)?;
    }
    for (unit, target) in ENABLED_UNITS {
        let wants = root.join(format!("etc/systemd/system/{target}.wants"));
        std::fs::create_dir_all(&wants).map_err(LabError::io(&wants))?;
        let link = wants.join(unit);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(format!("/etc/systemd/system/{unit}"), &link)
                .map_err(LabError::io(&link))?;
        }
    }
    // Debian enables a package's units when installing it; the base leaves them to `init`.
    let mut disable = vec![root_s.as_str(), "systemctl", "disable", "--quiet"];
    disable.extend(DISABLED_UNITS);
    sys::run("chroot", &disable).await?;
    if let Some(link) = enablement_links(root, DISABLED_UNITS).first() {
        return Err(LabError::Invalid(format!(
            "{} is still enabled after `systemctl disable` in the base root filesystem",
            link.display()
        )));
    }
    // Mount points for the node's real (non-overlay) containerd and kubelet dirs.
    for d in ["var/lib/containerd", "var/lib/kubelet", "root/.ssh"] {
        std::fs::create_dir_all(root.join(d)).map_err(LabError::io(root.join(d)))?;
    }
    // The downloaded .debs are not needed in every node.
    let archives = root.join("var/cache/apt/archives");
    if let Ok(entries) = std::fs::read_dir(&archives) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().ends_with(".deb") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// Links in `etc/systemd/system/*.wants/` (or `.requires/`) that start one of `units`.
fn enablement_links(root: &Path, units: &[&str]) -> Vec<PathBuf> {
    let Ok(dirs) = std::fs::read_dir(root.join("etc/systemd/system")) else {
        return Vec::new();
    };
    dirs.flatten()
        .filter(|d| {
            let name = d.file_name().to_string_lossy().into_owned();
            name.ends_with(".wants") || name.ends_with(".requires")
        })
        .flat_map(|d| {
            units
                .iter()
                .map(move |u| d.path().join(u))
                .filter(|l| l.symlink_metadata().is_ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha_packages_are_in_and_left_disabled() {
        for p in ["keepalived", "haproxy"] {
            assert!(PACKAGES.contains(&p), "{p}");
            assert!(DISABLED_UNITS.contains(&format!("{p}.service").as_str()));
        }
        let dir = tempfile::tempdir().unwrap();
        let wants = dir
            .path()
            .join("etc/systemd/system/multi-user.target.wants");
        std::fs::create_dir_all(&wants).unwrap();
        std::os::unix::fs::symlink(
            "/lib/systemd/system/haproxy.service",
            wants.join("haproxy.service"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/lib/systemd/system/ssh.service", wants.join("ssh.service"))
            .unwrap();
        assert_eq!(
            enablement_links(dir.path(), DISABLED_UNITS),
            [wants.join("haproxy.service")]
        );
    }

    #[test]
    fn stamp_is_stable_and_covers_the_units() {
        assert_eq!(recipe_stamp(), recipe_stamp());
        assert_eq!(recipe_stamp().len(), 64);
        let prep = BASE_FILES
            .iter()
            .find(|f| f.path.ends_with("node-prep.sh"))
            .map(|f| f.contents)
            .unwrap_or_default();
        assert!(prep.contains("mknod -m 0600 /dev/kmsg c 1 11"));
        assert!(prep.contains("shadow vm/overcommit_memory 1"));
        assert!(prep.starts_with("#!/bin/sh"));
        assert!(BASE_FILES.iter().all(|f| !f.path.starts_with('/')));
    }

    #[test]
    fn stale_base_is_not_current() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_current(dir.path()));
        std::fs::write(dir.path().join(STAMP), "old").unwrap();
        assert!(!is_current(dir.path()));
        std::fs::write(dir.path().join(STAMP), recipe_stamp()).unwrap();
        assert!(is_current(dir.path()));
    }
}
