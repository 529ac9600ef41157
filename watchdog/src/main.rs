fn main() -> std::process::ExitCode {
    tocsin_watchdog::cli::main()
}
