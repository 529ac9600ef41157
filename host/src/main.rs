//! The `tocsin` binary: see `tocsin --help`.

fn main() -> std::process::ExitCode {
    tocsin::cli::main()
}
