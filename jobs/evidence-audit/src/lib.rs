//! The evidence-audit job (`evidence-audit`): each release's evidence
//! folder evaluated against the control catalog (seed 003 §III.1,
//! `catalog.rs`), with the seed's renderer output per release
//! (`evaluate.rs`) and one finding per failing (release, control).
//!
//! Assertions: evidence present, SARIF gates done to the SARIF 2.1.0 spec
//! (`sarif.rs`), DSSE in-toto attestations verified with configured keys
//! and matched to the release's artifacts (`dsse.rs`, `attest_check.rs`),
//! RFC 9535 JSONPath comparisons and evidence age.

mod attest_check;
pub mod attestation;
pub mod audit;
pub mod catalog;
pub mod chain;
pub mod commands;
pub mod dsse;
pub mod evaluate;
pub mod fixtures;
pub mod pack;
pub mod pdf;
mod run;
pub mod sarif;

use std::path::PathBuf;
use std::sync::Arc;

use patrol_job_api::secret::SecretRef;
use patrol_job_api::{BuildContext, JobDescription, JobInstance, JobKind, ParamDoc, ParamError};
use patrol_provmon_verify::fixtures::SigningKey;
use patrol_provmon_verify::key::PublicKey;
use serde::Deserialize;

/// The `evidence-audit` job kind.
#[derive(Debug, Default)]
pub struct EvidenceAuditJob;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The control catalog (`policies/compliance/control_catalog.yaml`).
    pub catalog: PathBuf,
    /// A folder of release folders (one per tag), each evaluated.
    pub releases: PathBuf,
    /// Public keys (PEM files) release attestations may be signed with.
    #[serde(default)]
    pub attestation_keys: Vec<PathBuf>,
    /// Where each release's signed control attestation goes, once.
    #[serde(default)]
    pub attestations: Option<AttestationsSpec>,
    /// Make each run the evidence audit of a period instead of the
    /// per-release evaluation (a quarterly schedule).
    #[serde(default)]
    pub audit: Option<AuditSpec>,
}

/// `params.audit`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSpec {
    /// `2026Q4`, `2026` or `previous` (the quarter before the run's).
    #[serde(default = "default_period")]
    pub period: String,
    /// The share of the period's releases to audit (`10%`).
    #[serde(default = "default_share")]
    pub sample: String,
    /// The draw's seed (default `<schedule id>:<period>`), in the report.
    #[serde(default)]
    pub seed: Option<String>,
    /// Where `audit-<period>.json` and `.md` go.
    #[serde(default)]
    pub report_dir: Option<PathBuf>,
}

fn default_period() -> String {
    "previous".into()
}

fn default_share() -> String {
    "10%".into()
}

/// `params.attestations`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationsSpec {
    /// `<dir>/<release>/control-attestation.{intoto.json,pdf,pdf.sig}`.
    pub dir: PathBuf,
    /// The private key (PEM) that signs them: `file:PATH` or `env:NAME`.
    pub signing_key: SecretRef,
}

/// The runbook of each finding reason.
pub(crate) const RUNBOOKS: [(&str, &str); 3] = [
    (
        "evidence-missing-artifact",
        "evidence-audit-missing-artifact",
    ),
    ("attestation-invalid", "evidence-audit-attestation-invalid"),
    ("control-failed", "evidence-audit-control-failed"),
];

impl JobKind for EvidenceAuditJob {
    type Config = Params;

    fn kind(&self) -> &'static str {
        "evidence-audit"
    }

    fn describe(&self) -> JobDescription {
        JobDescription {
            kind: "evidence-audit",
            summary: "Evaluates each release's evidence against the control catalog (SBOMs, SARIF gates, signed attestations, JSON checks, evidence age) and pages failing controls",
            params: vec![
                ParamDoc {
                    name: "catalog",
                    type_name: "path",
                    required: true,
                    default: None,
                    description: "The control catalog (schema 1): controls, evidence globs, assertions, SOC 2 / ISO 27001 ids",
                },
                ParamDoc {
                    name: "releases",
                    type_name: "path",
                    required: true,
                    default: None,
                    description: "A folder of release evidence folders (each with release.json: tag, created, artifacts)",
                },
                ParamDoc {
                    name: "attestations",
                    type_name: "{dir, signing_key: file:PATH | env:NAME}",
                    required: false,
                    default: None,
                    description: "Sign each release's control attestation once (DSSE in-toto Statement, PDF and its signature under <dir>/<release>/) and chain it in the ledger",
                },
                ParamDoc {
                    name: "audit",
                    type_name: "{period: 2026Q4 | 2026 | previous, sample: 10%, seed, report_dir}",
                    required: false,
                    default: None,
                    description: "Make each run the evidence audit of a period: a reproducible share of its releases re-verified (evidence, attestation, recorded verdicts), the report written, a finding per failing release",
                },
                ParamDoc {
                    name: "attestation_keys",
                    type_name: "list of paths",
                    required: false,
                    default: Some("[]"),
                    description: "Public keys (PEM) the releases' DSSE attestations may be signed with",
                },
            ],
        }
    }

    fn validate(&self, params: &Params) -> Result<(), Vec<ParamError>> {
        let mut errors = Vec::new();
        if let Some(audit) = &params.audit {
            if let Err(message) = audit::parse_period(&audit.period, chrono::Utc::now()) {
                errors.push(ParamError::new("audit.period", message));
            }
            if let Err(message) = audit::parse_share(&audit.sample) {
                errors.push(ParamError::new("audit.sample", message));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn build(
        &self,
        mut params: Params,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn JobInstance>, Vec<ParamError>> {
        let mut errors = Vec::new();
        params.catalog = ctx.path(&params.catalog);
        params.releases = ctx.path(&params.releases);
        let catalog = catalog::load(&params.catalog)
            .map_err(|problems| {
                errors.extend(problems.into_iter().map(|p| ParamError::new("catalog", p)));
            })
            .ok();
        if !params.releases.is_dir() {
            errors.push(ParamError::new(
                "releases",
                format!("{}: no such folder", params.releases.display()),
            ));
        }
        let keys = load_keys(&mut params.attestation_keys, ctx, &mut errors);
        let signer = match &mut params.attestations {
            Some(spec) => {
                spec.dir = ctx.path(&spec.dir);
                spec.signing_key
                    .resolve(ctx.base_dir())
                    .and_then(|pem| SigningKey::from_pem(pem.expose()))
                    .map_err(|message| {
                        errors.push(ParamError::new("attestations.signing_key", message))
                    })
                    .ok()
            }
            None => None,
        };
        if let Some(dir) = params.audit.as_mut().and_then(|a| a.report_dir.as_mut()) {
            *dir = ctx.path(dir);
        }
        let catalog_sha256 = std::fs::read(&params.catalog)
            .map(|bytes| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)))
            .unwrap_or_default();
        for (_, runbook) in RUNBOOKS {
            if let Err(error) = ctx.check_runbook("catalog", runbook) {
                errors.push(error);
            }
        }
        match catalog {
            Some(catalog) if errors.is_empty() => Ok(Arc::new(run::EvidenceAuditInstance {
                params,
                catalog,
                catalog_sha256,
                keys,
                signer,
            })),
            _ => Err(errors),
        }
    }

    fn commands(&self) -> Option<Arc<dyn patrol_job_api::JobCommands>> {
        Some(Arc::new(commands::EvidenceAuditCommands))
    }
}

/// Reads each key file (anchored at the schedule's folder).
fn load_keys(
    paths: &mut [PathBuf],
    ctx: &BuildContext,
    errors: &mut Vec<ParamError>,
) -> Vec<PublicKey> {
    let mut keys = Vec::new();
    for (n, path) in paths.iter_mut().enumerate() {
        *path = ctx.path(path);
        match read_key(path) {
            Ok(key) => keys.push(key),
            Err(message) => errors.push(ParamError::new(format!("attestation_keys[{n}]"), message)),
        }
    }
    keys
}

/// A public key from a PEM file.
pub fn read_key(path: &std::path::Path) -> Result<PublicKey, String> {
    let pem = std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
    PublicKey::from_pem(&pem).map_err(|err| format!("{}: {err}", path.display()))
}

/// The audit's inputs from a schedule's params, relative paths anchored at
/// `base`: the catalog, the releases, the evidence keys, and the control
/// attestations' folder and public key (from the signing key).
pub fn audit_setup(params: &Params, base: &std::path::Path) -> Result<audit::Setup, String> {
    let at = |path: &std::path::Path| base.join(path);
    let catalog = catalog::load(&at(&params.catalog)).map_err(|errors| errors.join("\n"))?;
    let evidence_keys = params
        .attestation_keys
        .iter()
        .map(|path| read_key(&at(path)))
        .collect::<Result<Vec<_>, _>>()?;
    let (attestations, attestation_keys) = match &params.attestations {
        Some(spec) => {
            let pem = spec.signing_key.resolve(base)?;
            let key = SigningKey::from_pem(pem.expose())?;
            (Some(at(&spec.dir)), vec![key.public_key()])
        }
        None => (None, Vec::new()),
    };
    Ok(audit::Setup {
        catalog,
        releases: at(&params.releases),
        attestations,
        evidence_keys,
        attestation_keys,
    })
}
