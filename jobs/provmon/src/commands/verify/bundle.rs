//! `patrol verify bundle`: a Sigstore bundle for an artifact, with the
//! flags the Sigstore clients share for conformance testing
//! (`--bundle`, `--certificate-identity`, `--certificate-oidc-issuer`,
//! `--key`, `--trusted-root`, then the artifact path or `sha256:<hex>`).

use std::path::PathBuf;

use patrol_provmon_verify::bundle::{check_bundle, Signer, Subject, TrustRoot};

use super::{read_input, Artifact, Report, Unusable};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("signer").required(true).args(["certificate_identity", "key"])))]
pub struct Args {
    /// The bundle (`.sigstore.json`).
    #[arg(long)]
    pub bundle: PathBuf,
    /// Keyless: the certificate's subject alternative name, matched exactly.
    #[arg(long, requires = "certificate_oidc_issuer", conflicts_with = "key")]
    pub certificate_identity: Option<String>,
    /// Keyless: the OIDC issuer the certificate must name.
    #[arg(long, requires = "certificate_identity")]
    pub certificate_oidc_issuer: Option<String>,
    /// A managed key (PEM) instead of a certificate identity.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// A `trusted_root.json` (fully offline); without it, the Sigstore
    /// public-good root shipped with patrol.
    #[arg(long)]
    pub trusted_root: Option<PathBuf>,
    /// Print the result as JSON on stdout (exit codes unchanged).
    #[arg(long)]
    pub json: bool,
    /// The artifact: a path, or `sha256:<hex>` (for DSSE: a subject of the
    /// in-toto statement).
    pub artifact: String,
}

pub fn run(args: &Args) -> u8 {
    super::finish(args.json, verify(args))
}

fn verify(args: &Args) -> Result<Report, Unusable> {
    let artifact = Artifact::parse(&args.artifact)?;
    let bundle = read_input("bundle", &args.bundle)?;
    let key_pem = match &args.key {
        Some(path) => Some(read_input("key", path)?),
        None => None,
    };
    let root_json = match &args.trusted_root {
        Some(path) => Some(read_input("trusted root", path)?),
        None => None,
    };
    let mut report = artifact.report();
    let mut fail = |check: &'static str, reason: String| {
        report.check = Some(check);
        report.reason = Some(reason);
    };
    let root = match (&root_json, &args.trusted_root) {
        (Some(json), Some(path)) => {
            TrustRoot::from_json(&String::from_utf8_lossy(json), &path.display().to_string())
        }
        _ => TrustRoot::public_good(),
    };
    let root = match root {
        Ok(root) => root,
        Err(reason) => {
            fail("trusted root", reason);
            return Ok(report);
        }
    };
    let signer = match (&key_pem, &args.key) {
        (Some(pem), Some(path)) => match Signer::key_from_pem(&String::from_utf8_lossy(pem)) {
            Ok(signer) => signer,
            Err(reason) => {
                fail("key", format!("{}: {reason}", path.display()));
                return Ok(report);
            }
        },
        _ => Signer::Identity {
            identity: args.certificate_identity.clone().unwrap_or_default(),
            issuer: args.certificate_oidc_issuer.clone().unwrap_or_default(),
        },
    };
    let subject = match &artifact {
        Artifact::File {
            bytes: Some(bytes), ..
        } => Subject::Bytes(bytes),
        other => Subject::Sha256(other.sha256()),
    };
    match check_bundle(&bundle, subject, &signer, &root) {
        Ok(facts) => {
            report.verified = true;
            let mut put = |name: &str, value: Option<String>| {
                if let Some(value) = value {
                    report.facts.insert(name.into(), value.into());
                }
            };
            put("identity", facts.identity);
            put("issuer", facts.issuer);
            put("integrated_time", facts.integrated_time);
            put("trusted_root", Some(root.origin().to_string()));
            if let Signer::Key(_) = signer {
                put(
                    "key",
                    args.key.as_ref().map(|path| path.display().to_string()),
                );
            }
        }
        Err(reason) => fail("bundle", format!("{}: {reason}", args.bundle.display())),
    }
    Ok(report)
}
