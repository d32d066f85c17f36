//! One lab node: its overlay root, identity, systemd-nspawn process, and sshd readiness.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::error::LabError;
use super::{keys, names, netns, rootfs, sys};

/// Host-side launcher: joins the node's cgroups, then execs `setsid systemd-nspawn`.
const LAUNCHER: &str = include_str!("../../templates/lab/launch-node.sh");

/// Files and dirs of one node under `<lab>/nodes/NAME/`.
#[derive(Debug, Clone)]
pub struct NodeDirs {
    pub dir: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub root: PathBuf,
    /// Real directories for /var/lib/containerd and /var/lib/kubelet: containerd's
    /// snapshotter does not work overlay-on-overlay.
    pub containerd: PathBuf,
    pub kubelet: PathBuf,
    pub console: PathBuf,
}

impl NodeDirs {
    pub fn new(lab_dir: &Path, name: &str) -> Self {
        let dir = lab_dir.join("nodes").join(name);
        NodeDirs {
            upper: dir.join("upper"),
            work: dir.join("work"),
            root: dir.join("root"),
            containerd: dir.join("containerd"),
            kubelet: dir.join("kubelet"),
            console: dir.join("console.log"),
            dir,
        }
    }
}

/// The overlay mount options; `,` and `:` would be misread inside them.
pub fn overlay_options(base: &Path, d: &NodeDirs) -> Result<String, LabError> {
    let parts = [base, &d.upper, &d.work];
    if let Some(bad) = parts
        .iter()
        .find(|p| p.to_string_lossy().contains([',', ':']))
    {
        return Err(LabError::Invalid(format!(
            "{} contains ',' or ':', which overlayfs options cannot hold; use another state dir",
            bad.display()
        )));
    }
    Ok(format!(
        "lowerdir={},upperdir={},workdir={}",
        base.display(),
        d.upper.display(),
        d.work.display()
    ))
}

/// Create the node's dirs and mount its overlay root (idempotent).
pub async fn mount_root(base: &Path, d: &NodeDirs) -> Result<(), LabError> {
    for p in [
        &d.dir,
        &d.upper,
        &d.work,
        &d.root,
        &d.containerd,
        &d.kubelet,
    ] {
        std::fs::create_dir_all(p).map_err(LabError::io(p))?;
    }
    if sys::is_mount_point(&d.root)? {
        return Ok(());
    }
    let opts = overlay_options(base, d)?;
    let root = d.root.display().to_string();
    sys::run("mount", &["-t", "overlay", "overlay", "-o", &opts, &root])
        .await
        .map(|_| ())
}

fn write(path: &Path, contents: &str, mode: u32) -> Result<(), LabError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(LabError::io(dir))?;
    }
    std::fs::write(path, contents).map_err(LabError::io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(LabError::io(path))
}

/// sshd drop-in (read before the main config, so its value wins) of `lab up --user`.
const NO_ROOT_LOGIN: &str = "etc/ssh/sshd_config.d/00-director-boot-lab-user.conf";
/// sudoers entry of `lab up --user`.
const USER_SUDOERS: &str = "etc/sudoers.d/director-boot-lab-user";

/// The lab key as `user`'s only authorized key.
fn authorize(root: &Path, user: &str, authorized: &str) -> Result<(), LabError> {
    let home = root.join("home").join(user);
    let (uid, gid) = ids(root, user)?;
    let ssh = home.join(".ssh");
    write(&ssh.join("authorized_keys"), authorized, 0o600)?;
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700))
        .map_err(LabError::io(&ssh))?;
    for p in [&ssh, &ssh.join("authorized_keys")] {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(LabError::io(p))?;
    }
    Ok(())
}

/// uid and gid of `user` from the node's /etc/passwd.
fn ids(root: &Path, user: &str) -> Result<(u32, u32), LabError> {
    let passwd = root.join("etc/passwd");
    let text = std::fs::read_to_string(&passwd).map_err(LabError::io(&passwd))?;
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&user))
                .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
        })
        .ok_or_else(|| LabError::Invalid(format!("no user {user} in {}", passwd.display())))
}

/// A fresh random machine-id (32 hex digits).
fn new_machine_id() -> Result<String, LabError> {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(LabError::io("/proc/sys/kernel/random/uuid"))?;
    Ok(uuid.trim().replace('-', ""))
}

/// Give the node its identity in its own layer: hostname, machine-id, SSH host key (all
/// created once), and the lab client key authorized for root and `ops` (rewritten each time,
/// since the base is shared by labs of several state dirs). Returns the host public key.
pub async fn personalize(
    d: &NodeDirs,
    name: &str,
    client_pub: &str,
    firewalld: bool,
    user: Option<&str>,
) -> Result<String, LabError> {
    let root = &d.root;
    write(&root.join("etc/hostname"), &format!("{name}\n"), 0o644)?;
    write(
        &root.join("etc/hosts"),
        &format!(
            "127.0.0.1 localhost\n127.0.1.1 {name}\n::1 localhost ip6-localhost ip6-loopback\n"
        ),
        0o644,
    )?;
    let machine_id = root.join("etc/machine-id");
    let current = std::fs::read_to_string(&machine_id).unwrap_or_default();
    if current.trim().len() != 32 {
        write(&machine_id, &format!("{}\n", new_machine_id()?), 0o444)?;
    }
    let host_key = root.join("etc/ssh/ssh_host_ed25519_key");
    let host_pub = host_key.with_extension("pub");
    if !host_key.exists() || !host_pub.exists() {
        let _ = std::fs::remove_file(&host_key);
        let _ = std::fs::remove_file(&host_pub);
        keys::generate(&host_key, &format!("root@{name}")).await?;
    }
    let authorized = format!("{client_pub} director-boot-lab\n");
    let root_keys = root.join("root/.ssh/authorized_keys");
    let no_root = root.join(NO_ROOT_LOGIN);
    let sudoers = root.join(USER_SUDOERS);
    match user {
        // Like a RHEL cloud image: only the user logs in (with the key), root cannot.
        Some(user) => {
            let _ = std::fs::remove_file(&root_keys);
            write(&no_root, "PermitRootLogin no\n", 0o644)?;
            if ids(root, user).is_err() {
                let root_s = root.display().to_string();
                sys::run(
                    "chroot",
                    &[
                        &root_s,
                        "useradd",
                        "--create-home",
                        "--shell",
                        "/bin/bash",
                        user,
                    ],
                )
                .await?;
            }
            write(
                &sudoers,
                &format!(
                    "# director-boot lab: lab up --user {user}\n{user} ALL=(ALL) NOPASSWD:ALL\n"
                ),
                0o440,
            )?;
            authorize(root, user, &authorized)?;
        }
        None => {
            let _ = std::fs::remove_file(&no_root);
            let _ = std::fs::remove_file(&sudoers);
            write(&root_keys, &authorized, 0o600)?;
        }
    }
    authorize(root, rootfs::OPS_USER, &authorized)?;
    // firewalld is installed but disabled in the base; enabled in this node's own layer.
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    let link = wants.join("firewalld.service");
    if firewalld {
        std::fs::create_dir_all(&wants).map_err(LabError::io(&wants))?;
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink("/lib/systemd/system/firewalld.service", &link)
                .map_err(LabError::io(&link))?;
        }
    } else if link.symlink_metadata().is_ok() {
        std::fs::remove_file(&link).map_err(LabError::io(&link))?;
    }
    keys::public_key(&host_pub)
}

/// The systemd-nspawn arguments for a node (after the launcher's `--`).
pub fn nspawn_args(d: &NodeDirs, index: u32) -> Vec<String> {
    let name = names::node_name(index);
    vec![
        "-b".into(),
        "-D".into(),
        d.root.display().to_string(),
        format!(
            "--network-namespace-path={}",
            netns::netns_path(index).display()
        ),
        // PID 1 of this machine is not systemd: no machined registration, no scope unit.
        "--register=no".into(),
        "--keep-unit".into(),
        "-M".into(),
        name,
        // CAP_NET_ADMIN etc.: bridges, VXLAN, netns for the CNI inside the node.
        "--capability=all".into(),
        // runc joins a session keyring; nspawn's seccomp filter would refuse keyctl.
        "--system-call-filter=@keyring".into(),
        format!("--bind={}:/var/lib/containerd", d.containerd.display()),
        format!("--bind={}:/var/lib/kubelet", d.kubelet.display()),
        "--link-journal=no".into(),
        "--resolv-conf=off".into(),
        "--console=read-only".into(),
    ]
}

/// Start the node: launcher → node cgroups → setsid → systemd-nspawn, logging to
/// console.log. Returns the PID (the launcher execs, so it is nspawn's) and its start time.
pub fn launch(d: &NodeDirs, index: u32, cgroups: &[PathBuf]) -> Result<(u32, u64), LabError> {
    let name = names::node_name(index);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&d.console)
        .map_err(LabError::io(&d.console))?;
    let log_err = log.try_clone().map_err(LabError::io(&d.console))?;
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(LAUNCHER).arg("launch-node");
    cmd.args(cgroups);
    cmd.arg("--");
    cmd.args(nspawn_args(d, index));
    // /proc/sys/net writable: the bridge CNI writes ip_forward inside the node.
    cmd.env("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "network")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    let mut child = cmd
        .spawn()
        .map_err(|e| LabError::node(&name, format!("cannot start systemd-nspawn: {e}")))?;
    let pid = child.id();
    // exec keeps the start time, so it identifies nspawn from here on.
    let start = sys::start_time(pid)
        .ok_or_else(|| LabError::node(&name, "systemd-nspawn exited at once (see console.log)"))?;
    // Reap it should it exit while this CLI still runs; the node outlives the CLI otherwise.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok((pid, start))
}

/// Whether sshd answers on `addr:22` with its banner.
async fn ssh_banner(addr: std::net::Ipv4Addr) -> bool {
    let connect = tokio::net::TcpStream::connect((addr, 22));
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(2), connect).await else {
        return false;
    };
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await,
        Ok(Ok(n)) if n >= 4 && buf.starts_with(b"SSH-")
    )
}

/// Wait, bounded, until the node's sshd answers; fails early if nspawn died.
pub async fn wait_for_ssh(
    d: &NodeDirs,
    index: u32,
    pid: u32,
    start: u64,
    limit: Duration,
) -> Result<(), LabError> {
    let name = names::node_name(index);
    let addr = names::node_address(index);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if ssh_banner(addr).await {
            return Ok(());
        }
        if !sys::alive(pid, start) {
            return Err(LabError::node(
                &name,
                format!(
                    "systemd-nspawn exited before sshd answered on {addr}:22; last lines of {}:\n{}",
                    d.console.display(),
                    sys::tail(&d.console, 15)
                ),
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(LabError::node(
                &name,
                format!(
                    "sshd did not answer on {addr}:22 within {} s; see {}",
                    limit.as_secs(),
                    d.console.display()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Stop the node: SIGTERM to nspawn (a clean poweroff of the node), bounded wait, then
/// SIGKILL to that PID only; then whatever is left in the node's own cgroups.
pub async fn stop(pid: Option<u32>, start: Option<u64>, cgroups: &[PathBuf]) -> bool {
    if let (Some(pid), Some(start)) = (pid, start)
        && sys::alive(pid, start)
    {
        let _ = sys::signal(pid, "TERM").await;
        if !sys::wait_gone(pid, start, Duration::from_secs(30)).await && sys::alive(pid, start) {
            let _ = sys::signal(pid, "KILL").await;
            sys::wait_gone(pid, start, Duration::from_secs(10)).await;
        }
    }
    super::cgroup::kill_all(cgroups).await
}
