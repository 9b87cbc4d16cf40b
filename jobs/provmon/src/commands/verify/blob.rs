//! `patrol verify blob --key PEM --signature FILE ARTIFACT`: a signature
//! as `cosign sign-blob` writes it (base64 of an ASN.1 DER ECDSA P-256
//! signature over the blob's SHA-256, or of a raw Ed25519 signature over
//! the blob) checked with a public key, offline. Each input is checked on
//! its own first, so a damaged key or signature is named as such; a
//! signature that parses but does not verify names all three inputs, since
//! the mathematics cannot tell which of them changed.

use std::path::PathBuf;

use patrol_provmon_verify::cosign;
use patrol_provmon_verify::key::{KeyKind, PublicKey};

use super::{read_input, Artifact, Report, Unusable};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The public key (PEM: ECDSA P-256 or Ed25519).
    #[arg(long)]
    pub key: PathBuf,
    /// The signature file (base64, as `cosign sign-blob` writes it).
    #[arg(long)]
    pub signature: PathBuf,
    /// Print the result as JSON on stdout (exit codes unchanged).
    #[arg(long)]
    pub json: bool,
    /// The blob: a path, or `sha256:<hex>` (ECDSA keys only: an Ed25519
    /// signature covers the bytes themselves).
    pub artifact: String,
}

pub fn run(args: &Args) -> u8 {
    super::finish(args.json, verify(args))
}

fn verify(args: &Args) -> Result<Report, Unusable> {
    let artifact = Artifact::parse(&args.artifact)?;
    let pem = read_input("key", &args.key)?;
    let signature_text = read_input("signature", &args.signature)?;
    let mut report = artifact.report();
    let key_name = args.key.display().to_string();
    let signature_name = args.signature.display().to_string();
    let key = match PublicKey::from_pem(&String::from_utf8_lossy(&pem)) {
        Ok(key) => key,
        Err(err) => {
            report.check = Some("key");
            report.reason = Some(format!("{key_name}: not a usable public key: {err}"));
            return Ok(report);
        }
    };
    let signature = match cosign::decode_signature(&key, &String::from_utf8_lossy(&signature_text))
    {
        Ok(signature) => signature,
        Err(reason) => {
            report.check = Some("signature");
            report.reason = Some(format!("{signature_name}: {reason}"));
            return Ok(report);
        }
    };
    let checked = match (&artifact, key.kind()) {
        (Artifact::File {
            bytes: Some(bytes), ..
        }, _) => key.verify(bytes, &signature),
        (_, KeyKind::EcdsaP256) => key.verify_sha256_digest(&artifact.sha256(), &signature),
        (Artifact::Digest(_), _) => {
            return Err(Unusable(format!(
                "{key_name} is an Ed25519 key, whose signatures cover the blob's bytes: give the file, not its digest"
            )))
        }
        (Artifact::File { path, .. }, _) => {
            let bytes = std::fs::read(path)
                .map_err(|err| Unusable(format!("artifact {path}: {err}")))?;
            key.verify(&bytes, &signature)
        }
    };
    // The key's id as Rekor and cosign print it: SHA-256 of its DER.
    let key_id = key.log_id();
    match checked {
        Ok(()) => {
            report.verified = true;
            report.facts.insert("key".into(), key_name.into());
            report
                .facts
                .insert("key_id".into(), format!("sha256:{key_id}").into());
            report
                .facts
                .insert("signature".into(), signature_name.into());
        }
        Err(err) => {
            report.check = Some("signature");
            report.reason = Some(format!(
                "{signature_name} does not verify artifact {} ({}) with key {key_name} (sha256:{key_id}): {err}; the artifact, the signature or the key is not the one that was signed",
                artifact.file().unwrap_or_else(|| artifact.subject()),
                artifact.subject(),
            ));
        }
    }
    Ok(report)
}
