//! Issue 15 item 6 without IBM's installer (which cannot be had here):
//! `scripts/build-app-images.sh symphony` says what to download and from where, and refuses
//! what it cannot use, before touching any cache, lock or tool.

use std::process::Command;

fn script(args: &[&str]) -> (i32, String) {
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/build-app-images.sh"
    ))
    .args(args)
    .env(
        "DIRECTOR_BOOT_CACHE_DIR",
        std::env::temp_dir().join("db-symphony-cli"),
    )
    .output()
    .expect("run build-app-images.sh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn without_an_installer_it_says_what_to_download_and_from_where() {
    let (code, text) = script(&["symphony"]);
    assert_eq!(code, 1, "{text}");
    let help = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/catalog/symphony/image-help.txt"
    ))
    .unwrap();
    assert!(text.contains(help.trim()), "{text}");
    assert!(
        text.contains("give IBM's installer with --installer FILE"),
        "{text}"
    );
}

#[test]
fn bad_arguments_are_refused_with_the_reason() {
    let (code, text) = script(&["symphony", "--installer", "/nonexistent/sym.bin"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("--installer /nonexistent/sym.bin: no such file"),
        "{text}"
    );
    let (code, text) = script(&["spark", "--installer", "/nonexistent/sym.bin"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("--installer and --entitlement are for the symphony image"),
        "{text}"
    );
}
