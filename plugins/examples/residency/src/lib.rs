//! The seeds' tenant residency check (seed 002 §3.1–3.2) as a patrol
//! plugin: every observed data location is held against its tenant's entry
//! in `tenants.yaml` with the deny codes of the switchboard policy —
//! RESIDENCY (stored outside the tenant's region), LABEL (a label the
//! tenant does not allow), CLASSIFICATION (more sensitive than the tenant's
//! data class for that kind), TENANT (a tenant nobody declared).
//!
//! Built as a `cdylib` and loaded by `patrol plugin-host`; the `rlib` is
//! for this crate's tests and the runner's bench.

mod check;
mod inputs;

use patrol_plugin_sdk::{
    export_plugin, param, parse_params, JobError, ParamManifest, PluginContext, PluginJob,
    RunReport,
};

pub use check::{check_locations, Violation};
pub use inputs::{read_locations, read_tenants, Location, Locations, Tenant, Tenants};

/// The `residency` job.
#[derive(Debug, Default)]
pub struct ResidencyJob;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    tenants: String,
    locations: String,
}

impl PluginJob for ResidencyJob {
    fn kind(&self) -> &str {
        "residency"
    }

    fn summary(&self) -> &str {
        "tenant data residency: observed data locations vs tenants.yaml regions, labels and data classes"
    }

    fn params(&self) -> Vec<ParamManifest> {
        vec![
            param("tenants", "string", true, "tenants.yaml (seed 002 §3.1): id, region, labels, data_classes"),
            param("locations", "string", true, "observed data locations, NDJSON: tenant, store, kind, region, label, classification"),
        ]
    }

    fn run(&self, ctx: &PluginContext, params: serde_json::Value) -> Result<RunReport, JobError> {
        let params: Params =
            parse_params(&params).map_err(|err| JobError::InvalidParams(vec![err]))?;
        let tenants =
            read_tenants(std::path::Path::new(&params.tenants)).map_err(JobError::Failed)?;
        let locations =
            read_locations(std::path::Path::new(&params.locations)).map_err(JobError::Failed)?;
        Ok(check::report(&tenants, &locations, ctx.dry_run))
    }
}

export_plugin!(name: "residency", jobs: [ResidencyJob]);
