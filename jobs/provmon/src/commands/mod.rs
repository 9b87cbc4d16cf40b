//! provmon's commands on the `patrol` command line: `patrol verify
//! bundle|blob|release` (docs/verify.md) and `patrol evidence verify`.
//! Exit 0 verified, 1 verification failed, 2 usage or unusable input.

mod evidence;
mod verify;

use async_trait::async_trait;
use patrol_job_api::commands::{CommandContext, CommandError, JobCommands};

/// The commands provmon adds to `patrol`.
#[derive(Debug, Default)]
pub struct ProvmonCommands;

#[async_trait]
impl JobCommands for ProvmonCommands {
    fn commands(&self) -> Vec<clap::Command> {
        vec![verify::command(), evidence::command()]
    }

    async fn run_command(
        &self,
        name: &str,
        matches: &clap::ArgMatches,
        ctx: CommandContext,
    ) -> Result<u8, CommandError> {
        match name {
            "verify" => verify::verify(matches, &ctx).await,
            "evidence" => evidence::evidence(matches),
            other => Err(CommandError::new(format!(
                "provmon has no command `{other}`"
            ))),
        }
    }
}
