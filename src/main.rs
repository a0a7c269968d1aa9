//! Thin: everything is in the library's `cli` module.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    liqpass_indexer::cli::main()
}
