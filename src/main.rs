//! The `kiln` command: parse arguments, run, map errors to exit codes. Logic lives in the library.

fn main() -> std::process::ExitCode {
    kiln::cli::main()
}
