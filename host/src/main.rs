//! The `tocsin` binary: see `tocsin --help`.

fn main() -> std::process::ExitCode {
    // What Tocsin writes (the database with its link-signing key and
    // gateway credentials, node keys, buffered results, plugin caches) is
    // for its own user only: files 0600, directories 0700.
    // SAFETY: umask(2) only sets this process's file mode mask.
    unsafe { libc::umask(0o077) };
    tocsin::cli::main()
}
