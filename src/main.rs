//! The `memwarden` binary: the command line, and the benchmarks it runs.

mod bench;
mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    cli::main(cli::Cli::parse())
}
