//! Integration tests against real OpenSSH sshd processes on 127.0.0.1 (see `testing.rs`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::auth::Credentials;
use super::testing::{ChildGuard, LOCALHOST, Sshd, free_port, keygen, pubkey_of};
use super::*;

struct Lab {
    dir: tempfile::TempDir,
    sshd: Sshd,
    key: PathBuf,
}

/// A fresh sshd accepting one ed25519 client key.
fn lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let sshd_dir = dir.path().join("sshd");
    std::fs::create_dir(&sshd_dir).unwrap();
    let sshd = Sshd::start(&sshd_dir);
    let key = keygen(dir.path(), "id_ed25519", "ed25519", "");
    sshd.authorize(&key);
    Lab { dir, sshd, key }
}

impl Lab {
    fn cfg(&self) -> SshConfig {
        SshConfig {
            known_hosts: self.dir.path().join("state/known_hosts"),
            accept_new_host_keys: true,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
            bastion: None,
        }
    }

    async fn session(&self, cfg: &SshConfig) -> Session {
        let ep = self.sshd.endpoint(Some(&self.key));
        match Session::connect_with("t", &ep, false, cfg, &Credentials::default()).await {
            Ok(s) => s,
            Err(e) => panic!("{e}\nsshd log:\n{}", self.sshd.log_text()),
        }
    }
}

/// Callers spawn these futures on a multi-threaded runtime.
#[test]
fn session_and_its_futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    fn is_sync<T: Sync>() {}
    is_sync::<Session>();
    #[allow(clippy::let_underscore_future)]
    fn check(s: &'static Session, ep: &'static SshEndpoint, cfg: &'static SshConfig) {
        is_send(&Session::connect("h", ep, true, cfg));
        is_send(&s.run("x"));
        is_send(&s.sudo("x"));
        is_send(&s.run_streamed("x", true, |_, _| {}));
        is_send(&s.upload(b"", "/x", 0o644));
        is_send(&s.upload_file(Path::new("/x"), "/x", 0o644));
        is_send(&s.read_file("/x"));
    }
    let _ = check;
}

#[tokio::test]
async fn exec_exit_code_and_output() {
    let lab = lab();
    let s = lab.session(&lab.cfg()).await;
    assert_eq!(s.name(), "t");
    let out = s.run("echo out; echo err >&2; exit 3").await.unwrap();
    assert_eq!(out.exit_code, 3);
    assert!(!out.success());
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    // Root login without the sudo flag: privileged commands run as is.
    let out = s.sudo("id -u").await.unwrap();
    assert_eq!(out.stdout.trim(), "0");
    // A killed command reports the shell's 128+signal convention.
    let out = s.run("kill -9 $$").await.unwrap();
    assert_eq!(out.exit_code, 137);
    s.close().await;
}

#[tokio::test]
async fn streamed_lines_arrive_in_order_and_whole() {
    let lab = lab();
    let s = lab.session(&lab.cfg()).await;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = lines.clone();
    let out = s
        .run_streamed(
            "printf 'a\\nb'; sleep 0.3; printf 'c\\nd\\n'; printf 'e\\nf' >&2; \
             head -c 100000 /dev/zero | tr '\\0' x; printf 'last'",
            false,
            move |stream, line| seen.lock().unwrap().push((stream, line.to_string())),
        )
        .await
        .unwrap();
    let lines = lines.lock().unwrap().clone();
    let stdout: Vec<_> = lines
        .iter()
        .filter(|(s, _)| *s == Stream::Stdout)
        .map(|(_, l)| l.clone())
        .collect();
    let stderr: Vec<_> = lines
        .iter()
        .filter(|(s, _)| *s == Stream::Stderr)
        .map(|(_, l)| l.clone())
        .collect();
    assert_eq!(stdout.len(), 4, "{stdout:?}");
    assert_eq!(stdout[..3], ["a", "bc", "d"]);
    // A 100 kB line spans several SSH packets and is still one line, with the final
    // partial line flushed at the end.
    assert_eq!(stdout[3], format!("{}last", "x".repeat(100_000)));
    assert_eq!(stderr, ["e", "f"]);
    assert_eq!(out.exit_code, 0);
    assert!(out.stdout.starts_with("a\nbc\nd\nxxx"));
    assert_eq!(out.stderr, "e\nf");
}

#[tokio::test]
async fn command_timeout_and_session_survives() {
    let lab = lab();
    let mut cfg = lab.cfg();
    cfg.command_timeout = Duration::from_secs(1);
    let s = lab.session(&cfg).await;
    let t = Instant::now();
    let err = s.run("sleep 60").await.unwrap_err();
    // Cut off, not waited out (generous: the test host may be loaded).
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    match &err {
        SshError::CommandTimeout { command, secs, .. } => {
            assert_eq!(command, "sleep 60");
            assert_eq!(*secs, 1);
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("did not finish within 1 s"));
    assert_eq!(s.run("echo ok").await.unwrap().stdout, "ok\n");
}

#[tokio::test]
async fn concurrent_commands_on_one_session() {
    let lab = lab();
    let s = lab.session(&lab.cfg()).await;
    // More than sshd's MaxSessions (10): the rest queue instead of failing. Each command
    // prints when it started and ended on the server; overlapping spans show the commands
    // ran side by side (a wall-clock bound would fail on a loaded host).
    let outs = futures::future::join_all((0..14).map(|i| {
        let s = &s;
        async move {
            s.run(&format!("date +%s%N; sleep 1; echo {i}; date +%s%N"))
                .await
        }
    }))
    .await;
    let mut spans = Vec::new();
    for (i, out) in outs.into_iter().enumerate() {
        let out = out.unwrap().stdout;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(lines[1], i.to_string());
        let ns = |l: &str| l.parse::<u128>().unwrap();
        spans.push((ns(lines[0]), ns(lines[2])));
    }
    let most_at_once = spans
        .iter()
        .map(|&(start, _)| {
            spans
                .iter()
                .filter(|&&(a, b)| a <= start && start < b)
                .count()
        })
        .max()
        .unwrap();
    assert!(
        most_at_once >= 2,
        "the commands ran one at a time: {spans:?}"
    );
    assert!(
        most_at_once <= super::MAX_CHANNELS,
        "{most_at_once} at once: {spans:?}"
    );
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn upload_is_atomic_verified_and_idempotent() {
    let lab = lab();
    let s = lab.session(&lab.cfg()).await;
    // sshd runs on this machine, so the "remote" file is checked directly.
    let dir = lab.dir.path().join("remote/etc/new dir");
    let target = dir.join("it's.conf");
    let remote = target.to_str().unwrap();

    assert_eq!(s.read_file(remote).await.unwrap(), None);
    assert_eq!(
        s.upload(b"one\n", remote, 0o640).await.unwrap(),
        UploadOutcome::Written
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"one\n");
    assert_eq!(mode_of(&target), 0o640);
    assert_eq!(
        s.upload(b"one\n", remote, 0o640).await.unwrap(),
        UploadOutcome::Unchanged
    );
    // Same content, other mode: rewritten.
    assert_eq!(
        s.upload(b"one\n", remote, 0o600).await.unwrap(),
        UploadOutcome::Written
    );
    assert_eq!(mode_of(&target), 0o600);
    assert_eq!(
        s.upload(b"two\n", remote, 0o600).await.unwrap(),
        UploadOutcome::Written
    );
    assert_eq!(s.read_file(remote).await.unwrap().unwrap(), b"two\n");
    // Binary content round-trips through read_file.
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    s.upload(&binary, remote, 0o644).await.unwrap();
    assert_eq!(s.read_file(remote).await.unwrap().unwrap(), binary);
    assert_eq!(entries(&dir), ["it's.conf"]);

    // On-host verification: a wrong expected sha256 fails, leaves the target alone and
    // removes the temp file.
    let err = s
        .upload_stream(&b"three\n"[..], &sha256_hex(b"other"), remote, 0o644)
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::Upload { .. }), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), binary);
    assert_eq!(entries(&dir), ["it's.conf"]);

    // Not an absolute path, and a directory as target.
    assert!(matches!(
        s.upload(b"x", "relative/x", 0o644).await,
        Err(SshError::Upload { .. })
    ));
    let err = s
        .upload(b"x", dir.to_str().unwrap(), 0o644)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[tokio::test]
async fn upload_many_writes_every_file_in_one_round_trip() {
    use crate::ssh::SmallFile;
    let lab = lab();
    let s = lab.session(&lab.cfg()).await;
    let dir = lab.dir.path().join("remote/etc/many dir");
    let (a, b) = (dir.join("it's.key"), dir.join("sub/b.yaml"));
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let (ra, rb) = (a.to_str().unwrap(), b.to_str().unwrap());
    s.upload_many(&[
        SmallFile {
            remote: ra,
            data: &binary,
            mode: 0o600,
        },
        SmallFile {
            remote: rb,
            data: b"",
            mode: 0o644,
        },
    ])
    .await
    .unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), binary);
    assert_eq!(mode_of(&a), 0o600);
    assert_eq!(std::fs::read(&b).unwrap(), b"");
    assert_eq!(mode_of(&b), 0o644);
    // A directory as a target: the error names it, the files before it are in place, and
    // no temp file is left behind.
    let err = s
        .upload_many(&[
            SmallFile {
                remote: ra,
                data: b"new",
                mode: 0o600,
            },
            SmallFile {
                remote: dir.join("sub").to_str().unwrap(),
                data: b"x",
                mode: 0o644,
            },
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::Upload { .. }), "{err}");
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert_eq!(std::fs::read(&a).unwrap(), b"new");
    assert_eq!(entries(&dir), ["it's.key", "sub"]);
    assert_eq!(entries(&dir.join("sub")), ["b.yaml"]);
    assert!(matches!(
        s.upload_many(&[SmallFile {
            remote: "relative/x",
            data: b"x",
            mode: 0o644
        }])
        .await,
        Err(SshError::Upload { .. })
    ));
}

#[tokio::test]
async fn upload_file_streams_a_large_file() {
    let lab = lab();
    let s = lab.session(&lab.cfg()).await;
    let local = lab.dir.path().join("big.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&local).unwrap());
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..100 {
            for chunk in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&block).unwrap();
        }
    }
    let target = lab.dir.path().join("remote/opt/bin/big");
    let remote = target.to_str().unwrap();
    let t = Instant::now();
    assert_eq!(
        s.upload_file(&local, remote, 0o755).await.unwrap(),
        UploadOutcome::Written
    );
    eprintln!("100 MiB upload took {:?}", t.elapsed());
    assert_eq!(mode_of(&target), 0o755);
    let local_bytes = std::fs::read(&local).unwrap();
    assert_eq!(std::fs::metadata(&target).unwrap().len(), 100 << 20);
    assert!(std::fs::read(&target).unwrap() == local_bytes);
    assert_eq!(
        s.upload_file(&local, remote, 0o755).await.unwrap(),
        UploadOutcome::Unchanged
    );
    // The command fails at once (mkdir under /proc) while megabytes are still queued:
    // a prompt Upload error, not a hang until the command timeout.
    // (upload_stream with a made-up checksum skips hashing 100 MiB locally, so the time
    // measured is the transfer's alone.)
    let t = Instant::now();
    let file = tokio::fs::File::open(&local).await.unwrap();
    let err = s
        .upload_stream(
            tokio::io::BufReader::new(file),
            &sha256_hex(b"unused"),
            "/proc/director-boot-nope/big",
            0o755,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::Upload { .. }), "{err}");
    assert!(err.to_string().contains("mkdir"), "{err}");
    // Before the 30 s command timeout.
    assert!(t.elapsed() < Duration::from_secs(25), "{:?}", t.elapsed());

    let missing = lab.dir.path().join("nope");
    let err = s.upload_file(&missing, remote, 0o755).await.unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[tokio::test]
async fn unknown_host_key_refused_then_pinned() {
    let lab = lab();
    let mut cfg = lab.cfg();
    cfg.accept_new_host_keys = false;
    let ep = lab.sshd.endpoint(Some(&lab.key));
    let creds = Credentials::default();
    let err = Session::connect_with("h1", &ep, false, &cfg, &creds)
        .await
        .err()
        .unwrap();
    match &err {
        SshError::HostKeyUnknown {
            fingerprint,
            known_hosts,
            host,
        } => {
            assert_eq!(host, "h1");
            assert!(
                fingerprint.contains(&lab.sshd.host_fingerprint()),
                "{fingerprint}"
            );
            assert_eq!(known_hosts, &cfg.known_hosts);
        }
        other => panic!("{other}"),
    }
    assert!(!cfg.known_hosts.exists());

    cfg.accept_new_host_keys = true;
    let s = Session::connect_with("h1", &ep, false, &cfg, &creds)
        .await
        .unwrap();
    s.close().await;
    let text = std::fs::read_to_string(&cfg.known_hosts).unwrap();
    assert!(
        text.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", lab.sshd.port)),
        "{text}"
    );
    assert_eq!(mode_of(&cfg.known_hosts), 0o600);
    assert_eq!(mode_of(cfg.known_hosts.parent().unwrap()), 0o700);
    // Pinned now: accepted without accept_new, and not appended twice.
    cfg.accept_new_host_keys = false;
    Session::connect_with("h1", &ep, false, &cfg, &creds)
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&cfg.known_hosts).unwrap(), text);
}

#[tokio::test]
async fn changed_host_key_is_always_refused() {
    let mut lab = lab();
    let mut cfg = lab.cfg();
    let ep = lab.sshd.endpoint(Some(&lab.key));
    let creds = Credentials::default();
    // Comments and other hosts before the entry: the line number must still be right.
    std::fs::create_dir_all(cfg.known_hosts.parent().unwrap()).unwrap();
    std::fs::write(
        &cfg.known_hosts,
        "# managed by hand\n10.1.1.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ\n",
    )
    .unwrap();
    Session::connect_with("h", &ep, false, &cfg, &creds)
        .await
        .unwrap();
    let old = lab.sshd.host_fingerprint();
    lab.sshd.rekey();
    let new = lab.sshd.host_fingerprint();
    assert_ne!(old, new);
    for accept_new in [true, false] {
        cfg.accept_new_host_keys = accept_new;
        let err = Session::connect_with("h", &ep, false, &cfg, &creds)
            .await
            .err()
            .unwrap();
        match &err {
            SshError::HostKeyChanged {
                host,
                expected,
                offered,
                known_hosts,
                line,
            } => {
                assert_eq!(host, "h");
                assert!(expected.contains(&old), "{expected}");
                assert!(offered.contains(&new), "{offered}");
                assert_eq!(known_hosts, &cfg.known_hosts);
                assert_eq!(*line, 3);
            }
            other => panic!("{other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&old) && msg.contains(&new) && msg.contains(":3 pins"),
            "{msg}"
        );
    }

    // Hashed entries (ssh-keygen -H) are matched too.
    let out = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&cfg.known_hosts)
        .output()
        .unwrap();
    assert!(out.status.success());
    let hashed = std::fs::read_to_string(&cfg.known_hosts).unwrap();
    assert!(
        !hashed.contains("127.0.0.1") && hashed.contains("|1|"),
        "{hashed}"
    );
    let err = Session::connect_with("h", &ep, false, &cfg, &creds)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SshError::HostKeyChanged { .. }), "{err}");
    // Pin the new key (hashed) and it is accepted.
    std::fs::write(&cfg.known_hosts, "").unwrap();
    cfg.accept_new_host_keys = true;
    Session::connect_with("h", &ep, false, &cfg, &creds)
        .await
        .unwrap();
    std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&cfg.known_hosts)
        .output()
        .unwrap();
    cfg.accept_new_host_keys = false;
    let s = Session::connect_with("h", &ep, false, &cfg, &creds)
        .await
        .unwrap();
    assert_eq!(s.run("echo hashed-ok").await.unwrap().stdout, "hashed-ok\n");
}

#[tokio::test]
async fn wrong_key_fails_auth() {
    let lab = lab();
    let stranger = keygen(lab.dir.path(), "stranger", "ed25519", "");
    let ep = lab.sshd.endpoint(Some(&stranger));
    let err = Session::connect_with("h", &ep, false, &lab.cfg(), &Credentials::default())
        .await
        .err()
        .unwrap();
    match &err {
        SshError::Auth { user, tried, .. } => {
            assert_eq!(user, &ep.user);
            assert!(tried.contains("stranger"), "{tried}");
            assert!(tried.contains("SHA256:"), "{tried}");
        }
        other => panic!("{other}"),
    }
    // A missing key file is a key error, before any connection.
    let ep = lab.sshd.endpoint(Some(&lab.dir.path().join("nope")));
    let err = Session::connect_with("h", &ep, false, &lab.cfg(), &Credentials::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SshError::Key { .. }), "{err}");
    // No key file and no agent.
    let ep = lab.sshd.endpoint(None);
    let err = Session::connect_with("h", &ep, false, &lab.cfg(), &Credentials::default())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("SSH_AUTH_SOCK"), "{err}");
}

#[tokio::test]
async fn nothing_listening_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "k", "ed25519", "");
    let ep = SshEndpoint {
        address: LOCALHOST,
        port: free_port(),
        user: "root".into(),
        identity_file: Some(key),
    };
    let cfg = SshConfig {
        known_hosts: dir.path().join("known_hosts"),
        accept_new_host_keys: true,
        connect_timeout: Duration::from_secs(60),
        command_timeout: Duration::from_secs(10),
        bastion: None,
    };
    let t = Instant::now();
    let err = Session::connect_with("h", &ep, false, &cfg, &Credentials::default())
        .await
        .err()
        .unwrap();
    // Reported at once, not retried until the connect timeout.
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert!(matches!(err, SshError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
}

#[tokio::test]
async fn silent_listener_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "k", "ed25519", "");
    // Accepts TCP connections and never says a word.
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let ep = SshEndpoint {
        address: LOCALHOST,
        port,
        user: "root".into(),
        identity_file: Some(key),
    };
    let cfg = SshConfig {
        known_hosts: dir.path().join("known_hosts"),
        accept_new_host_keys: true,
        connect_timeout: Duration::from_secs(1),
        command_timeout: Duration::from_secs(60),
        bastion: None,
    };
    let t = Instant::now();
    let err = Session::connect_with("h", &ep, false, &cfg, &Credentials::default())
        .await
        .err()
        .unwrap();
    // The connect timeout, not the command timeout (generous: the test host may be loaded).
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(30),
        "{took:?}"
    );
    match &err {
        SshError::ConnectTimeout { addr, secs, .. } => {
            assert_eq!(addr, &format!("127.0.0.1:{port}"));
            assert_eq!(*secs, 1);
        }
        other => panic!("{other}"),
    }
    hold.abort();
}

/// A TCP relay to sshd that can go silent in both directions without closing, like a host
/// that lost power or a dropped route.
async fn freezable_relay(target: u16) -> (u16, Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::AtomicBool;
    let frozen = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let flag = frozen.clone();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = tokio::net::TcpStream::connect((LOCALHOST, target))
            .await
            .unwrap();
        let (cr, cw) = client.into_split();
        let (sr, sw) = server.into_split();
        let _ = tokio::join!(pump(cr, sw, flag.clone()), pump(sr, cw, flag));
    });
    (port, frozen)
}

async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(std::sync::atomic::Ordering::SeqCst) {
            // Swallow everything from now on, keeping both sockets open.
            continue;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn dead_host_is_noticed_by_keepalives() {
    super::session::TEST_KEEPALIVE.with(|k| k.set(Some(Duration::from_millis(500))));
    let lab = lab();
    let (port, frozen) = freezable_relay(lab.sshd.port).await;
    let mut ep = lab.sshd.endpoint(Some(&lab.key));
    ep.port = port;
    let mut cfg = lab.cfg();
    cfg.command_timeout = Duration::from_secs(180);
    let s = Session::connect_with("h", &ep, false, &cfg, &Credentials::default())
        .await
        .unwrap();
    assert_eq!(s.run("echo alive").await.unwrap().stdout, "alive\n");
    // The host dies while a command runs, then a new command is attempted.
    let t = Instant::now();
    let freeze = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let (result, ()) = tokio::join!(s.run("sleep 120"), freeze);
    let err = result.unwrap_err();
    // Noticed by keepalives, not by the command's end or its 180 s timeout.
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    assert!(matches!(err, SshError::Session { .. }), "{err}");
    assert!(err.to_string().contains("connection lost"), "{err}");
    let err = s.run("true").await.unwrap_err();
    assert!(err.to_string().contains("connection lost"), "{err}");
}

#[tokio::test]
async fn through_a_bastion() {
    let lab = lab(); // the target
    let jump_dir = lab.dir.path().join("jump");
    std::fs::create_dir(&jump_dir).unwrap();
    let jump = Sshd::start(&jump_dir);
    let jump_key = keygen(lab.dir.path(), "jump_key", "ecdsa", "");
    jump.authorize(&jump_key);
    let mut cfg = lab.cfg();
    cfg.bastion = Some(jump.endpoint(Some(&jump_key)));
    let ep = lab.sshd.endpoint(Some(&lab.key));
    let creds = Credentials::default();

    // The bastion's key is verified like any other.
    cfg.accept_new_host_keys = false;
    let err = Session::connect_with("h", &ep, false, &cfg, &creds)
        .await
        .err()
        .unwrap();
    match &err {
        SshError::HostKeyUnknown {
            host, fingerprint, ..
        } => {
            assert!(host.contains("bastion"), "{host}");
            assert!(fingerprint.contains(&jump.host_fingerprint()));
        }
        other => panic!("{other}"),
    }

    cfg.accept_new_host_keys = true;
    let sessions = futures::future::join_all((0..3).map(|i| {
        let (ep, cfg, creds) = (&ep, &cfg, &creds);
        async move { Session::connect_with(&format!("h{i}"), ep, false, cfg, creds).await }
    }))
    .await;
    let sessions: Vec<Session> = sessions.into_iter().map(|s| s.unwrap()).collect();
    for s in &sessions {
        // The target sees the connection coming from the bastion's forwarding.
        let out = s.run("echo via-$SSH_CONNECTION").await.unwrap();
        assert!(out.stdout.starts_with("via-127.0.0.1"), "{}", out.stdout);
    }
    // One bastion session shared by all hosts.
    let b0 = sessions[0]._bastion.as_ref().unwrap();
    for s in &sessions[1..] {
        assert!(Arc::ptr_eq(b0, s._bastion.as_ref().unwrap()));
    }
    let text = std::fs::read_to_string(&cfg.known_hosts).unwrap();
    assert!(
        text.contains(&format!("[127.0.0.1]:{} ", jump.port)),
        "{text}"
    );
    assert!(
        text.contains(&format!("[127.0.0.1]:{} ", lab.sshd.port)),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2, "{text}");
    // sshd's own view: one login on the bastion, three on the target.
    assert_eq!(jump.log_text().matches("Accepted publickey").count(), 1);
    assert_eq!(lab.sshd.log_text().matches("Accepted publickey").count(), 3);

    // The bastion cannot reach a target port: a Connect error naming the target.
    let dead = SshEndpoint {
        port: free_port(),
        ..ep.clone()
    };
    let err = Session::connect_with("dead", &dead, false, &cfg, &creds)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SshError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("bastion"), "{err}");
}

#[tokio::test]
async fn rsa_ecdsa_and_ed25519_keys() {
    let lab = lab();
    for kind in ["rsa", "ecdsa", "ed25519"] {
        let key = keygen(lab.dir.path(), &format!("id_{kind}_2"), kind, "");
        lab.sshd.authorize(&key);
        let ep = lab.sshd.endpoint(Some(&key));
        let s = Session::connect_with(kind, &ep, false, &lab.cfg(), &Credentials::default())
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}\n{}", lab.sshd.log_text()));
        assert_eq!(s.run("echo ok").await.unwrap().stdout, "ok\n");
        s.close().await;
    }
    // RSA must have used SHA-2 signatures (OpenSSH 9 refuses ssh-rsa/SHA-1 by default).
    assert!(
        lab.sshd.log_text().contains("RSA SHA256:"),
        "{}",
        lab.sshd.log_text()
    );
}

#[tokio::test]
async fn passphrase_protected_key() {
    let lab = lab();
    let key = keygen(lab.dir.path(), "id_locked", "ed25519", "s3cret pass");
    lab.sshd.authorize(&key);
    let ep = lab.sshd.endpoint(Some(&key));
    let err = Session::connect_with("h", &ep, false, &lab.cfg(), &Credentials::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SshError::Key { .. }), "{err}");
    assert!(err.to_string().contains(PASSPHRASE_ENV), "{err}");

    let wrong = Credentials {
        passphrase: Some("nope".into()),
        agent_socket: None,
    };
    let err = Session::connect_with("h", &ep, false, &lab.cfg(), &wrong)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("wrong passphrase"), "{err}");
    assert!(!err.to_string().contains("nope"), "{err}");

    let right = Credentials {
        passphrase: Some("s3cret pass".into()),
        agent_socket: None,
    };
    let s = Session::connect_with("h", &ep, false, &lab.cfg(), &right)
        .await
        .unwrap();
    assert_eq!(s.run("echo unlocked").await.unwrap().stdout, "unlocked\n");

    // The public entry point reads $DIRECTOR_BOOT_KEY_PASSPHRASE. Setting variables in this
    // multi-threaded test process would be unsound, so a child process gets it instead.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "ssh::tests::env_child",
            "--ignored",
            "--nocapture",
        ])
        .env(PASSPHRASE_ENV, "s3cret pass")
        .env_remove("SSH_AUTH_SOCK")
        .env(
            CHILD_ENV,
            format!(
                "{}|{}|{}",
                lab.sshd.port,
                key.display(),
                lab.cfg().known_hosts.display()
            ),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("child: unlocked"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const CHILD_ENV: &str = "DIRECTOR_BOOT_SSH_TEST_CHILD";

/// Runs only as the child of `passphrase_protected_key` (port|key|known_hosts in the env).
#[tokio::test]
#[ignore = "run by passphrase_protected_key in a child process"]
async fn env_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let ep = SshEndpoint {
        address: LOCALHOST,
        port: parts[0].parse().unwrap(),
        user: super::testing::current_user(),
        identity_file: Some(PathBuf::from(parts[1])),
    };
    let cfg = SshConfig {
        known_hosts: PathBuf::from(parts[2]),
        accept_new_host_keys: false,
        connect_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(10),
        bastion: None,
    };
    let s = Session::connect("h", &ep, false, &cfg).await.unwrap();
    let out = s.run("echo unlocked").await.unwrap();
    println!("child: {}", out.stdout.trim());
}

#[tokio::test]
async fn ssh_agent_keys() {
    let lab = lab();
    let sock = lab.dir.path().join("agent.sock");
    let agent = ChildGuard(
        std::process::Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "ssh-agent did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let add = |key: &Path| {
        let out = std::process::Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &sock)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let creds = Credentials {
        passphrase: None,
        agent_socket: Some(sock.clone()),
    };
    let ep = lab.sshd.endpoint(None);

    let err = Session::connect_with("h", &ep, false, &lab.cfg(), &creds)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("holds no keys"), "{err}");

    // A key the server does not know first, then the right (RSA) one.
    add(&keygen(lab.dir.path(), "agent_stranger", "ed25519", ""));
    let err = Session::connect_with("h", &ep, false, &lab.cfg(), &creds)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SshError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("agent_stranger"), "{err}");

    let rsa = keygen(lab.dir.path(), "agent_rsa", "rsa", "");
    lab.sshd.authorize(&rsa);
    add(&rsa);
    let s = Session::connect_with("h", &ep, false, &lab.cfg(), &creds)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.sshd.log_text()));
    assert_eq!(s.run("echo agent").await.unwrap().stdout, "agent\n");
    assert!(pubkey_of(&rsa).exists());
    drop(agent);
}

/// The sudo code path against a stand-in sudo (see `testing::fake_sudo`).
#[tokio::test]
async fn sudo_wrapping_upload_and_password_error() {
    let dir = tempfile::tempdir().unwrap();
    let sshd_dir = dir.path().join("sshd");
    std::fs::create_dir(&sshd_dir).unwrap();
    let sshd = Sshd::start_with(&sshd_dir, &super::testing::fake_sudo(dir.path()));
    let key = keygen(dir.path(), "id", "ed25519", "");
    sshd.authorize(&key);
    let cfg = SshConfig {
        known_hosts: dir.path().join("known_hosts"),
        accept_new_host_keys: true,
        connect_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(30),
        bastion: None,
    };
    let ep = sshd.endpoint(Some(&key));
    let s = Session::connect_with("h", &ep, true, &cfg, &Credentials::default())
        .await
        .unwrap();
    let sudo_log = dir.path().join("sudo.log");
    let calls = || std::fs::read_to_string(&sudo_log).unwrap_or_default();

    // Unprivileged commands never touch sudo.
    assert_eq!(s.run("echo plain").await.unwrap().stdout, "plain\n");
    assert_eq!(calls(), "");
    // Privileged ones are wrapped, with quoting intact.
    let cmd = "printf '%s|' \"it's\" 'a  b' \"$((1+2))\"; echo; exit 4";
    let out = s.sudo(cmd).await.unwrap();
    assert_eq!(out.stdout, "it's|a  b|3|\n");
    assert_eq!(out.exit_code, 4);
    assert_eq!(calls(), format!("sh -c {cmd}\n"));
    let mut lines = Vec::new();
    s.run_streamed("echo streamed", true, |_, l| lines.push(l.to_string()))
        .await
        .unwrap();
    assert_eq!(lines, ["streamed"]);

    // Uploads and reads go through sudo too.
    let target = dir.path().join("remote/x.conf");
    let remote = target.to_str().unwrap();
    let before = calls().lines().count();
    assert_eq!(
        s.upload(b"via sudo", remote, 0o600).await.unwrap(),
        UploadOutcome::Written
    );
    assert_eq!(
        s.upload(b"via sudo", remote, 0o600).await.unwrap(),
        UploadOutcome::Unchanged
    );
    assert_eq!(s.read_file(remote).await.unwrap().unwrap(), b"via sudo");
    assert_eq!(std::fs::read(&target).unwrap(), b"via sudo");
    assert_eq!(calls().lines().count(), before + 4);

    // sudo wanting a password is a clear error, for commands and uploads alike.
    std::fs::write(dir.path().join("password-required"), "").unwrap();
    let err = s.sudo("true").await.unwrap_err();
    match &err {
        SshError::SudoPassword { user, .. } => assert_eq!(user, &ep.user),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("NOPASSWD"));
    let err = s.upload(b"new", remote, 0o600).await.unwrap_err();
    assert!(matches!(err, SshError::SudoPassword { .. }), "{err}");
    let err = s.read_file(remote).await.unwrap_err();
    assert!(matches!(err, SshError::SudoPassword { .. }), "{err}");
}

/// `sudo -n` as a real non-root user against a lab inventory with `user: ops, sudo: auto`.
/// The same case runs in every test run in tests/foundation_lab.rs; this one is for poking at
/// an existing lab: DIRECTOR_BOOT_LAB_INVENTORY=<inventory.yaml> cargo test -- --ignored.
#[tokio::test]
#[ignore = "needs DIRECTOR_BOOT_LAB_INVENTORY; covered by tests/foundation_lab.rs"]
async fn lab_sudo_user() {
    let path = std::env::var("DIRECTOR_BOOT_LAB_INVENTORY")
        .expect("DIRECTOR_BOOT_LAB_INVENTORY=<inventory with a sudo user>");
    let inv = crate::inventory::load(Path::new(&path)).unwrap();
    let host = inv
        .hosts
        .iter()
        .find(|h| h.sudo)
        .expect("a host with sudo: true in the lab inventory");
    // A private known_hosts, so the lab's own file is never modified.
    let dir = tempfile::tempdir().unwrap();
    let cfg = SshConfig {
        known_hosts: dir.path().join("known_hosts"),
        accept_new_host_keys: true,
        connect_timeout: Duration::from_secs(inv.ssh.connect_timeout_secs.max(5)),
        command_timeout: Duration::from_secs(60),
        bastion: inv.ssh.bastion.clone(),
    };
    let s = Session::connect(&host.name, &host.ssh, true, &cfg)
        .await
        .unwrap();
    assert_ne!(s.run("id -u").await.unwrap().stdout.trim(), "0");
    let out = s.sudo("id -u; echo \"it's $(whoami)\"").await.unwrap();
    assert_eq!(out.stdout, "0\nit's root\n");
    let remote = "/root/director-boot-ssh-test/file";
    assert_eq!(
        s.upload(b"lab\n", remote, 0o600).await.unwrap(),
        UploadOutcome::Written
    );
    assert_eq!(
        s.upload(b"lab\n", remote, 0o600).await.unwrap(),
        UploadOutcome::Unchanged
    );
    assert_eq!(s.read_file(remote).await.unwrap().unwrap(), b"lab\n");
    assert_eq!(
        s.sudo("stat -c '%U %a' /root/director-boot-ssh-test/file")
            .await
            .unwrap()
            .stdout,
        "root 600\n"
    );
    s.sudo("rm -rf /root/director-boot-ssh-test").await.unwrap();
    assert_eq!(s.read_file(remote).await.unwrap(), None);
}
