//! Compiles the plugins workspace (`plugins/`) for wasm32-wasip2 and
//! generates `include_bytes!` for each component, so the built-in plugins
//! ship inside the `tocsin` binary.
//!
//! The nested cargo uses its own target directory, so it never waits on
//! the lock of the build that runs this script.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// (name the host knows it by, file cargo produces, testing only)
const ARTIFACTS: &[(&str, &str, bool)] = &[
    ("http", "tocsin_check_http.wasm", false),
    ("tcp", "tocsin_check_tcp.wasm", false),
    ("dns", "tocsin_check_dns.wasm", false),
    ("tls-expiry", "tocsin_check_tls_expiry.wasm", false),
    ("webhook", "tocsin_notifier_webhook.wasm", false),
    ("twilio", "tocsin_notifier_twilio.wasm", false),
    ("email", "tocsin_notifier_email.wasm", false),
    ("pagerduty", "tocsin_notifier_pagerduty.wasm", false),
    ("slack", "tocsin_notifier_slack.wasm", false),
    ("vonage", "tocsin_notifier_vonage.wasm", false),
    ("noop", "tocsin_testing_noop.wasm", true),
    ("misbehave", "tocsin_testing_misbehave.wasm", true),
    ("command", "tocsin-testing-command.wasm", true),
    ("sockets", "tocsin_testing_sockets.wasm", true),
    ("json-threshold", "json_threshold.wasm", true),
];

/// Directories whose changes require a rebuild (not `plugins/` as a whole:
/// a plugin author's `plugins/*/target` must not trigger one).
const SOURCES: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    ".cargo",
    "sdk",
    "http",
    "tcp",
    "dns",
    "tls-expiry",
    "webhook",
    "twilio",
    "email",
    "pagerduty",
    "slack",
    "vonage",
    "examples/json-threshold/src",
    "examples/json-threshold/Cargo.toml",
    "testing/noop",
    "testing/misbehave",
    "testing/command",
    "testing/sockets",
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.join("../..");
    let plugins = root.join("plugins");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<crate>/out.
    let target_dir = out.ancestors().nth(4).unwrap_or(&out).join("wasm-plugins");

    for source in SOURCES {
        println!("cargo:rerun-if-changed={}", plugins.join(source).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    require_target();
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--workspace", "--target", TARGET])
        .arg("--manifest-path")
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings are for the host, not for wasm.
    for var in
        ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "RUSTC_WORKSPACE_WRAPPER"]
    {
        cmd.env_remove(var);
    }
    for (key, _) in env::vars() {
        if key.starts_with("CARGO_PROFILE_") || key.starts_with("CARGO_FEATURE_") || key.starts_with("CARGO_CFG_") {
            cmd.env_remove(key);
        }
    }
    let output = cmd.output().expect("running cargo for the plugins");
    if !output.status.success() {
        panic!("building the plugins in {} failed:\n{}", plugins.display(), String::from_utf8_lossy(&output.stderr));
    }

    let built = target_dir.join(TARGET).join("release");
    let mut code = String::new();
    for (name, file, testing) in ARTIFACTS {
        let from = built.join(file);
        let to = out.join(file);
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        let cfg = if *testing { "#[cfg(feature = \"testing\")] " } else { "" };
        writeln!(
            code,
            "{cfg}pub const {}: Artifact = Artifact {{ name: {name:?}, wasm: include_bytes!({:?}) }};",
            konst(name),
            to.display()
        )
        .unwrap();
    }
    std::fs::write(out.join("artifacts.rs"), code).unwrap();
}

fn konst(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

fn require_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc).args(["--print", "sysroot"]).output().expect("running rustc");
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    if !Path::new(&sysroot).join("lib/rustlib").join(TARGET).exists() {
        panic!("the {TARGET} target is not installed; run `rustup target add {TARGET}` and build again");
    }
}
