//! Test harness: real OpenSSH `sshd` processes on 127.0.0.1, keys made by `ssh-keygen`.
//! Every process started here is killed by PID when its guard drops (also on panic).

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::inventory::SshEndpoint;

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Generate a key pair with ssh-keygen; returns the private key path.
pub fn keygen(dir: &Path, name: &str, kind: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", passphrase, "-C", name, "-f"])
        .arg(&path);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    let out = cmd.output().expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// `SHA256:...` of a public key file, as ssh-keygen prints it.
pub fn keygen_fingerprint(pubkey: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(pubkey)
        .output()
        .expect("run ssh-keygen -l");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

pub fn pubkey_of(private: &Path) -> PathBuf {
    let mut p = private.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind((LOCALHOST, 0)).expect("bind");
    l.local_addr().expect("addr").port()
}

/// One running sshd.
pub struct Sshd {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    pub host_key: PathBuf,
    pub authorized_keys: PathBuf,
    pub log: PathBuf,
    /// Extra sshd_config lines.
    extra: String,
}

impl Sshd {
    /// Start sshd in `dir` (which must exist) with a fresh ed25519 host key; clients may
    /// log in with any key listed in `dir/authorized_keys`.
    pub fn start(dir: &Path) -> Sshd {
        Self::start_with(dir, "")
    }

    /// Like `start`, with extra sshd_config lines.
    pub fn start_with(dir: &Path, extra: &str) -> Sshd {
        let host_key = dir.join("ssh_host_ed25519_key");
        if !host_key.exists() {
            keygen(dir, "ssh_host_ed25519_key", "ed25519", "");
        }
        let authorized_keys = dir.join("authorized_keys");
        if !authorized_keys.exists() {
            std::fs::write(&authorized_keys, "").expect("authorized_keys");
        }
        let mut sshd = Sshd {
            child: None,
            port: 0,
            dir: dir.to_path_buf(),
            host_key,
            authorized_keys,
            log: dir.join("sshd.log"),
            extra: extra.to_string(),
        };
        // The free port may be taken between probe and bind; try a few.
        for _ in 0..5 {
            if sshd.spawn_on(free_port()) {
                return sshd;
            }
        }
        panic!(
            "sshd did not start; log:\n{}",
            std::fs::read_to_string(&sshd.log).unwrap_or_default()
        );
    }

    /// Allow logins with this key.
    pub fn authorize(&self, private: &Path) {
        let key = std::fs::read_to_string(pubkey_of(private)).expect("read pubkey");
        let mut all = std::fs::read_to_string(&self.authorized_keys).unwrap_or_default();
        all.push_str(&key);
        std::fs::write(&self.authorized_keys, all).expect("write authorized_keys");
    }

    /// Replace the host key and restart on the same port (the "rebuilt host" case).
    pub fn rekey(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.host_key);
        let _ = std::fs::remove_file(pubkey_of(&self.host_key));
        keygen(&self.dir, "ssh_host_ed25519_key", "ed25519", "");
        let port = self.port;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn_on(port) {
            assert!(Instant::now() < deadline, "sshd did not restart on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn host_fingerprint(&self) -> String {
        keygen_fingerprint(&pubkey_of(&self.host_key))
    }

    pub fn endpoint(&self, identity: Option<&Path>) -> SshEndpoint {
        SshEndpoint {
            address: LOCALHOST,
            port: self.port,
            user: current_user(),
            identity_file: identity.map(Path::to_path_buf),
        }
    }

    fn spawn_on(&mut self, port: u16) -> bool {
        // sshd running as root insists on its privilege separation directory.
        if nix_is_root() {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let config = self.dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
                 StrictModes no\nUsePAM no\nPidFile none\nPermitRootLogin yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 AllowTcpForwarding yes\nMaxStartups 100\nMaxSessions 10\nLogLevel VERBOSE\n{extra}\n",
                hk = self.host_key.display(),
                ak = self.authorized_keys.display(),
                extra = self.extra,
            ),
        )
        .expect("write sshd_config");
        let log = std::fs::File::create(&self.log).expect("sshd log");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sshd");
        self.child = Some(child);
        self.port = port;
        // Ready when it answers with its SSH banner.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(_)) = c.try_wait()
            {
                self.child = None;
                return false;
            }
            if banner(port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop();
        false
    }

    /// Kill exactly the sshd this guard started.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn nix_is_root() -> bool {
    current_user() == "root"
}

fn banner(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::new(LOCALHOST, port),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 8];
    matches!(s.read_exact(&mut buf), Ok(()) if &buf == b"SSH-2.0-")
}

/// A stand-in `sudo` for this machine (which has none): checks it is called as
/// `sudo -n ...`, logs the call, and either runs the command (NOPASSWD) or, when
/// `<dir>/password-required` exists, fails like real sudo. Returns the sshd_config line
/// that puts it first on the PATH of sessions.
pub fn fake_sudo(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("fakebin");
    std::fs::create_dir_all(&bin).expect("fakebin");
    let script = bin.join("sudo");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             [ \"$1\" = -n ] || {{ echo 'fake sudo: -n missing' >&2; exit 99; }}\n\
             shift\n\
             printf '%s\\n' \"$*\" >> {log}\n\
             if [ -e {flag} ]; then echo 'sudo: a password is required' >&2; exit 1; fi\n\
             exec \"$@\"\n",
            log = dir.join("sudo.log").display(),
            flag = dir.join("password-required").display(),
        ),
    )
    .expect("write fake sudo");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    format!(
        "SetEnv PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        bin.display()
    )
}

/// Any other child process a test starts (ssh-agent), killed by PID on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
