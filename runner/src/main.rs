//! The `patrol` command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = patrol::cli::Cli::parse();
    patrol::cli::main(cli)
}
