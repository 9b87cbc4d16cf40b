//! The `patrol` command.

use std::process::ExitCode;

fn main() -> ExitCode {
    patrol::cli::main_from_args(std::env::args_os())
}
