//! Shared by the lab tests: run the real binary against a lab in a temp state dir, tear the
//! lab down even when an assertion fails, and reach nodes with the OpenSSH client.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_director-boot");

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|r| r.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// A lab of `nodes` machines in a fresh state dir; `lab down` on drop.
pub struct Lab {
    pub state: tempfile::TempDir,
    pub inventory: PathBuf,
}

impl Lab {
    pub fn up(nodes: u32) -> Lab {
        let state = tempfile::tempdir().expect("temp state dir");
        let out = db(state.path(), &["lab", "up", "--nodes", &nodes.to_string()]);
        assert!(out.status.success(), "lab up failed");
        let inventory = state.path().join("lab/inventory.yaml");
        assert!(
            inventory.exists(),
            "lab up wrote no inventory at {}",
            inventory.display()
        );
        Lab { state, inventory }
    }

    pub fn dir(&self) -> PathBuf {
        self.state.path().join("lab")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        db(self.state.path(), args)
    }

    /// Run with the inventory inserted after the subcommand words.
    pub fn with_inventory(&self, words: &[&str], rest: &[&str]) -> Output {
        let inv = self.inventory.to_string_lossy().into_owned();
        let mut args: Vec<&str> = words.to_vec();
        args.push(&inv);
        args.extend_from_slice(rest);
        db(self.state.path(), &args)
    }

    pub fn ssh(&self, node_addr: &str, command: &str) -> Output {
        ssh(&self.dir(), &format!("root@{node_addr}"), command)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .env("DIRECTOR_BOOT_STATE_DIR", self.state.path())
            .args(["lab", "down"])
            .output();
    }
}

pub fn db(state: &Path, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .env("DIRECTOR_BOOT_STATE_DIR", state)
        .args(args)
        .output()
        .expect("run director-boot");
    eprintln!(
        "$ director-boot {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn ssh(lab_dir: &Path, user_host: &str, command: &str) -> Output {
    Command::new("ssh")
        .arg("-i")
        .arg(lab_dir.join("id_ed25519"))
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            lab_dir.join("known_hosts").display()
        ))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=10",
        ])
        .arg(user_host)
        .arg(command)
        .output()
        .expect("run ssh")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
