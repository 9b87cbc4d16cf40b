use anyhow::Result;

use super::OK;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

pub fn jobs(config: Option<&std::path::Path>, args: Args) -> Result<u8> {
    // Built-in jobs and those of the configured plugins.
    let registry = super::Context::load(config)?.registry()?;
    let descriptions: Vec<_> = registry.all().map(|job| job.describe()).collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&descriptions)?);
        return Ok(OK);
    }
    for description in descriptions {
        println!("{} — {}", description.kind, description.summary);
        for param in description.params {
            let default = param
                .default
                .map(|d| format!(" (default {d})"))
                .unwrap_or_default();
            let required = if param.required { " required" } else { "" };
            println!(
                "  {:<14} {:<16}{required} {}{default}",
                param.name, param.type_name, param.description
            );
        }
    }
    Ok(OK)
}
