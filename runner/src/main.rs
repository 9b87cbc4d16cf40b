//! The `patrol` command.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    // The process guard patrol starts its jobs' processes under (see
    // patrol_job_api::fence): before anything else, no runtime, no logs.
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(patrol_job_api::fence::GUARD_ARG))
    {
        patrol_job_api::fence::guard_main(args.by_ref().skip(2).collect());
    }
    patrol::cli::main_from_args(args)
}
