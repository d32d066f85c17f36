//! Issue 15 item 4 on a real 3-node lab: Spark on Kubernetes. `deploy-app spark` sets up what
//! Spark's own Kubernetes scheduler needs (a ServiceAccount with a driver's rights, the image's
//! driver/executor entrypoint) and prints one `spark-submit --master k8s://https://<API>
//! --deploy-mode cluster ...` line. This host plays the user's workstation: a venv with only
//! PyPI's pyspark (the image's version) and the host's Java. The line, run as printed, starts a
//! driver pod whose log says `Pi is roughly 3.14`; executor pods appear during the run and are
//! gone after it. The Jupyter member does the same in client mode (its driver creates the
//! executor pods). The catalog's persistDirs are claims of the default StorageClass here, so
//! the deploy also shows them bound. Skipped when the Spark image has not been built.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn spark_archive() -> PathBuf {
    cache_dir().join("app-images/spark.tar")
}

/// The user's workstation: a venv with `pip install pyspark==VERSION` (made once, cached; pip
/// reuses the image build's download cache when there is one).
fn workstation(version: &str) -> PathBuf {
    let venv = cache_dir().join("spark-workstation/venv");
    let submit = venv.join("bin/spark-submit");
    let pinned = venv.join(format!(
        "lib/python3.11/site-packages/pyspark-{version}.dist-info"
    ));
    if submit.exists() && pinned.exists() {
        return venv;
    }
    let t0 = Instant::now();
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "python3 -m venv {}", venv.display());
    let out = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--no-compile"])
        .arg(format!("pyspark=={version}"))
        .env(
            "PIP_CACHE_DIR",
            cache_dir().join("app-images/work/pip-cache"),
        )
        .output()
        .expect("pip");
    assert!(
        out.status.success(),
        "pip install pyspark: {}",
        stderr(&out)
    );
    eprintln!(
        "spark-k8s-lab: workstation venv (pyspark {version}) in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    venv
}

/// Names of the Spark executor pods right now (one Spark app runs at a time here; executors
/// carry the name the job gives its SparkSession, not spark-submit's `--name`).
fn executors(c: &Cluster) -> Vec<String> {
    require_lab_bridge();
    let admin = c.lab.state.path().join("clusters/lab/admin.conf");
    let out = Command::new(c.mirror.join("bin/kubectl"))
        .arg("--kubeconfig")
        .arg(&admin)
        .args(["get", "pods", "-o", "name", "-l", "spark-role=executor"])
        .output()
        .expect("kubectl");
    stdout(&out).lines().map(str::to_string).collect()
}

/// Wait for `child`, watching the executor pods; returns (output, executor pods seen).
fn watch(c: &Cluster, mut child: Child, secs: u64) -> (std::process::Output, usize) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut seen = std::collections::BTreeSet::new();
    loop {
        seen.extend(executors(c));
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_secs(2)),
            _ => {
                let _ = child.kill();
                break;
            }
        }
    }
    let out = child.wait_with_output().expect("wait");
    (out, seen.len())
}

fn until_no_executors(c: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = executors(c);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "executor pods still there 60 s after the run: {left:?}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn pi_of(text: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.contains("Pi is roughly"))
        .unwrap_or_else(|| panic!("no `Pi is roughly` in: {text}"));
    let v: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!((v - std::f64::consts::PI).abs() < 0.05, "{line}");
    v
}

fn submit(line: &str, venv: &Path) -> Child {
    require_lab_bridge();
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .args(["-c", line])
        .env("PATH", path)
        .env_remove("SPARK_HOME")
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spark-submit")
}

#[test]
fn spark_submit_cluster_mode_and_jupyter_run_pi_on_kubernetes() {
    if !is_root() {
        eprintln!("skipped: lab tests need root");
        return;
    }
    let archive = spark_archive();
    if !archive.exists() {
        eprintln!(
            "skipped: no Spark image at {} (scripts/build-app-images.sh spark)",
            archive.display()
        );
        return;
    }
    let version = "4.0.1";
    let venv = workstation(version);
    let c = Cluster {
        lab: Lab::up(3),
        mirror: lab_mirror(),
    };
    let t0 = Instant::now();
    let (out, report) = c.init(&[]);
    assert!(out.status.success(), "init failed: {report}");
    let archive_s = archive.to_string_lossy().into_owned();
    let out = c.lab.with_inventory(&["images", "load"], &[&archive_s]);
    assert!(out.status.success(), "images load: {}", stderr(&out));
    eprintln!(
        "spark-k8s-lab: init + images load {:.0} s",
        t0.elapsed().as_secs_f64()
    );

    // deploy-app: one worker is enough here; the printed line is the user's.
    let t1 = Instant::now();
    let out = c.lab.run(&[
        "deploy-app",
        "spark",
        "--set",
        "worker.members=1",
        "--timeout",
        "600",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "deploy-app: {text}{}", stderr(&out));
    eprintln!(
        "spark-k8s-lab: deploy-app {:.0} s",
        t1.elapsed().as_secs_f64()
    );
    let line = text
        .lines()
        .find(|l| {
            l.contains(&format!(
                "spark-submit --master k8s://https://10.213.{}.",
                lab_slot()
            ))
        })
        .unwrap_or_else(|| panic!("no spark-submit line in: {text}"))
        .trim()
        .to_string();
    assert!(line.contains("--deploy-mode cluster"), "{line}");
    // persistDirs: claims of the default StorageClass, bound.
    let pvcs = c.wait_for(
        &[
            "get",
            "pvc",
            "-o",
            "jsonpath={range .items[*]}{.status.phase} {end}",
        ],
        60,
        |t| !t.trim().is_empty(),
    );
    assert!(
        pvcs.split_whitespace().all(|p| p == "Bound"),
        "claims not bound: {pvcs}"
    );

    // The workstation's spark-submit, cluster mode.
    let t2 = Instant::now();
    let (run, seen) = watch(&c, submit(&line, &venv), 480);
    let took = t2.elapsed();
    let log = stdout(&run) + &stderr(&run);
    assert!(run.status.success(), "spark-submit failed: {log}");
    let driver = c.wait_for(
        &[
            "get",
            "pods",
            "-l",
            "spark-app-name=spark-pi,spark-role=driver",
            "-o",
            "jsonpath={.items[0].status.phase}",
        ],
        30,
        |t| t == "Succeeded" || t == "Failed",
    );
    let logs = stdout(&c.kubectl(&[
        "logs",
        "-l",
        "spark-app-name=spark-pi,spark-role=driver",
        "--tail=-1",
    ]));
    assert_eq!(driver, "Succeeded", "driver pod: {logs}");
    let pi = pi_of(&logs);
    assert!(seen >= 1, "no executor pod was seen during the run");
    until_no_executors(&c);
    eprintln!(
        "spark-k8s-lab: spark-submit --deploy-mode cluster: Pi {pi} in {:.0} s, {seen} executor pods, all gone",
        took.as_secs_f64()
    );

    // The same mode from the notebook: examples/pi-on-kubernetes.ipynb run cell by cell in a
    // kernel of the live Jupyter server (tests/support/run_notebook.py, piped into the member,
    // drives the server's REST and kernel websocket API as the browser does), the kernel being
    // the client-mode driver.
    let t3 = Instant::now();
    let child = {
        require_lab_bridge();
        let admin = c.lab.state.path().join("clusters/lab/admin.conf");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/run_notebook.py");
        Command::new(c.mirror.join("bin/kubectl"))
            .arg("--kubeconfig")
            .arg(&admin)
            .args([
                "exec",
                "-i",
                "spark-jupyter-0",
                "-c",
                "app",
                "--",
                "/opt/venv/bin/python3",
                "-",
                "examples/pi-on-kubernetes.ipynb",
            ])
            .stdin(std::fs::File::open(&script).expect("run_notebook.py"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl exec")
    };
    let (run, seen) = watch(&c, child, 480);
    let out = stdout(&run);
    assert!(run.status.success(), "notebook: {out}{}", stderr(&run));
    let pi = pi_of(&out);
    assert!(
        seen >= 1,
        "no executor pod was seen during the notebook's run"
    );
    until_no_executors(&c);
    eprintln!(
        "spark-k8s-lab: notebook kernel (client mode on Kubernetes): Pi {pi} in {:.0} s, {seen} executor pods, all gone",
        t3.elapsed().as_secs_f64()
    );
    for (pod, mem) in c.member_memory(None, "spark") {
        eprintln!("spark-k8s-lab: memory {pod}: {mem}");
    }
    eprintln!("spark-k8s-lab: total {:.0} s", t0.elapsed().as_secs_f64());
}
