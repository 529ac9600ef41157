//! The binary's config check, as an operator runs it before starting a
//! watchdog. (Being an integration test also makes `cargo test --workspace`
//! build `tocsin-watchdog`, which the end-to-end tests in `tests/` start.)

use std::process::Command;

fn check(config: &std::path::Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin-watchdog"))
        .arg("--config")
        .arg(config)
        .arg("check-config")
        .output()
        .expect("running tocsin-watchdog");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_example_config_passes_and_a_typo_is_named() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("watchdog.example.toml");
    let (code, stdout, stderr) = check(&example);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("OK (1 controllers, 0 peers, 1 gateways)"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("w.toml");
    let text = std::fs::read_to_string(&example).unwrap().replace("down_after = 2", "down_afer = 2");
    std::fs::write(&typo, text).unwrap();
    let (code, _, stderr) = check(&typo);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("unknown field `down_afer`"), "{stderr}");
    assert!(stderr.contains("w.toml"), "the error names the file: {stderr}");
}
