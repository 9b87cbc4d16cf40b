//! The control attestation of a release (seed 003 D60): the renderer's
//! output as the predicate of an in-toto Statement whose subjects are the
//! release's artifacts, in a DSSE envelope signed with the configured key,
//! and the same rendered as a PDF with a detached signature
//! (cosign `sign-blob` format: base64 of the signature over its bytes).
//!
//! Deterministic: the same catalog, evidence and key give the same bytes,
//! apart from `created_utc` (the evaluation time), which every output
//! carries. ECDSA signatures are deterministic (RFC 6979).

use base64::Engine as _;
use patrol_provmon_verify::fixtures::SigningKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::dsse;
use crate::evaluate::{Release, Report};
use crate::pdf::{self, Line};

/// The predicate type of a control attestation.
pub const PREDICATE_TYPE: &str = "https://patrol.dev/attestations/control/v1";

/// A release's signed attestation and its PDF.
#[derive(Debug, Clone)]
pub struct Attestation {
    /// The DSSE envelope (JSON).
    pub envelope: Vec<u8>,
    pub pdf: Vec<u8>,
    /// base64 signature over `pdf`.
    pub pdf_signature: String,
}

/// The in-toto Statement of `report`: subjects are the release's
/// artifacts; the predicate is the report plus each control's framework
/// ids and the catalog's digest.
pub fn statement(
    report: &Report,
    release: &Release,
    catalog: &Catalog,
    catalog_sha256: &str,
) -> Value {
    let subjects: Vec<Value> = release
        .artifacts
        .iter()
        .map(|a| json!({"name": a.name, "digest": {"sha256": a.sha256.to_lowercase()}}))
        .collect();
    let maps: serde_json::Map<String, Value> = catalog
        .controls
        .iter()
        .map(|c| (c.id.clone(), json!(c.maps)))
        .collect();
    let mut predicate = serde_json::to_value(report).unwrap_or_default();
    predicate["catalog"] = json!({"sha256": catalog_sha256, "maps": maps});
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    })
}

/// Signs the statement and renders the PDF.
pub fn attest(
    report: &Report,
    release: &Release,
    catalog: &Catalog,
    catalog_sha256: &str,
    key: &SigningKey,
) -> Attestation {
    let statement = statement(report, release, catalog, catalog_sha256);
    let envelope = dsse::sign(key, &statement);
    let payload_sha256 = hex::encode(Sha256::digest(
        serde_json::to_vec(&statement).unwrap_or_default(),
    ));
    let pdf = pdf::render(
        &format!("Control Attestation {}", report.release),
        &lines(
            report,
            release,
            catalog,
            &dsse::key_id(key),
            &payload_sha256,
        ),
    );
    let pdf_signature = base64::engine::general_purpose::STANDARD.encode(key.sign(&pdf));
    Attestation {
        envelope,
        pdf,
        pdf_signature,
    }
}

/// The PDF of an unsigned evaluation (no key: it says so).
pub fn render_unsigned(
    report: &Report,
    release: &Release,
    catalog: &Catalog,
    statement: &Value,
) -> Vec<u8> {
    let payload_sha256 = hex::encode(Sha256::digest(
        serde_json::to_vec(statement).unwrap_or_default(),
    ));
    let mut lines = lines(report, release, catalog, "(none)", &payload_sha256);
    if let Some(last) = lines.last_mut() {
        *last = Line::body("NOT SIGNED: evaluated without a signing key.");
    }
    pdf::render(&format!("Control Attestation {}", report.release), &lines)
}

fn lines(
    report: &Report,
    release: &Release,
    catalog: &Catalog,
    key_id: &str,
    payload_sha256: &str,
) -> Vec<Line> {
    let verdict = |pass: bool| if pass { "PASS" } else { "FAIL" };
    let mut lines = vec![
        Line::heading(format!("Control Attestation — {}", report.release)),
        Line::body(format!("Created (UTC): {}", report.created_utc)),
        Line::body(format!("Overall: {}", verdict(report.overall))),
        Line::body(""),
        Line::body("Artifacts:"),
    ];
    for artifact in &release.artifacts {
        lines.push(Line::body(format!(
            "  {}  sha256:{}",
            artifact.name, artifact.sha256
        )));
    }
    lines.push(Line::body(""));
    lines.push(Line::body("Controls:"));
    for control in &report.controls {
        let maps = catalog
            .controls
            .iter()
            .find(|c| c.id == control.id)
            .map(|c| {
                c.maps
                    .iter()
                    .map(|(framework, ids)| format!("{framework}: {}", ids.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        lines.push(Line::body(format!(
            "  {}  {}  {}  ({maps})",
            control.id,
            verdict(control.pass),
            control.name
        )));
        for detail in &control.details {
            lines.push(Line::body(format!("      {detail}")));
        }
    }
    lines.push(Line::body(""));
    lines.push(Line::body(format!(
        "Signed as a DSSE in-toto Statement ({PREDICATE_TYPE}); key id {key_id}; payload sha256 {payload_sha256}."
    )));
    lines
}
