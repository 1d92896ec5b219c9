use clap::Parser;

fn main() -> std::process::ExitCode {
    memwarden::cli::main(memwarden::cli::Cli::parse())
}
