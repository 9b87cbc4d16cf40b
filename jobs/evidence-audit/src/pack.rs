//! Audit pack v1 (seed 001 G1): everything an auditor needs about one
//! release in one signed, deterministic tarball.
//!
//! `audit-pack-<tag>/` holds `evidence/…` (the release folder's files),
//! `attestation/…` (its signed control attestation, PDF and signature, when
//! attested), `index.json` (every file with its sha256, size and the
//! controls whose evidence it is), `control-map.json` (each control's SOC 2
//! and ISO 27001 ids), `summary.json` and `summary.csv` (each control's
//! verdict now), and the signed manifest of provmon's evidence packs
//! (`manifest.json`, `.sha256`, `.sig`: `patrol evidence verify` checks an
//! unpacked pack). The tarball is deterministic: entries sorted, mode 0644,
//! owner 0, mtime 0, gzip without a time; the manifest's `created_at` is the
//! release's time, so the same release gives the same bytes.

use std::path::{Path, PathBuf};

use patrol_provmon_verify::evidence::write_pack;
use patrol_provmon_verify::fixtures::SigningKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::evaluate::{self, Inputs, Release, Report};

/// The files of a release's pack, by path inside the pack.
pub fn pack_files(
    catalog: &Catalog,
    folder: &Path,
    release: &Release,
    report: &Report,
    attestation: Option<&Path>,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut evidence = Vec::new();
    collect(folder, folder, &mut evidence).map_err(|err| format!("{}: {err}", folder.display()))?;
    evidence.sort();
    for relative in &evidence {
        let bytes =
            std::fs::read(folder.join(relative)).map_err(|err| format!("{relative}: {err}"))?;
        files.push((format!("evidence/{relative}"), bytes));
    }
    if let Some(dir) = attestation {
        for name in [
            "control-attestation.intoto.json",
            "control-attestation.pdf",
            "control-attestation.pdf.sig",
        ] {
            if let Ok(bytes) = std::fs::read(dir.join(name)) {
                files.push((format!("attestation/{name}"), bytes));
            }
        }
    }
    let index: Vec<Value> = files
        .iter()
        .map(|(path, bytes)| {
            let controls: Vec<&str> = match path.strip_prefix("evidence/") {
                Some(relative) => catalog
                    .controls
                    .iter()
                    .filter(|c| {
                        c.evidence.iter().any(|e| {
                            glob::Pattern::new(e.pattern()).is_ok_and(|p| p.matches(relative))
                        })
                    })
                    .map(|c| c.id.as_str())
                    .collect(),
                None => catalog.controls.iter().map(|c| c.id.as_str()).collect(),
            };
            json!({"path": path, "sha256": hex::encode(Sha256::digest(bytes)), "bytes": bytes.len(), "controls": controls})
        })
        .collect();
    let map: serde_json::Map<String, Value> = catalog
        .controls
        .iter()
        .map(|c| (c.id.clone(), json!({"name": c.name, "maps": c.maps})))
        .collect();
    let pretty = |value: &Value| {
        let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    };
    files.push((
        "index.json".into(),
        pretty(&json!({"version": 1, "release": release.tag, "created": release.created, "artifacts": release.artifacts, "files": index})),
    ));
    files.push(("control-map.json".into(), pretty(&Value::Object(map))));
    files.push((
        "summary.json".into(),
        pretty(&serde_json::to_value(report).unwrap_or_default()),
    ));
    files.push((
        "summary.csv".into(),
        summary_csv(catalog, report).into_bytes(),
    ));
    Ok(files)
}

fn collect(base: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        // Never through a symbolic link: it could bring in anything.
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect(base, &path, out)?;
        } else if kind.is_file() {
            out.push(
                path.strip_prefix(base)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    Ok(())
}

/// A CSV field, quoted when it needs to be (RFC 4180).
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn summary_csv(catalog: &Catalog, report: &Report) -> String {
    let mut out = String::from("release,control,name,pass,soc2,iso27001,failures\r\n");
    for control in &report.controls {
        let maps = catalog
            .controls
            .iter()
            .find(|c| c.id == control.id)
            .map(|c| &c.maps);
        let ids = |framework: &str| {
            maps.and_then(|m| m.get(framework))
                .map(|ids| ids.join(" "))
                .unwrap_or_default()
        };
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\r\n",
            field(&report.release),
            field(&control.id),
            field(&control.name),
            control.pass,
            field(&ids("soc2")),
            field(&ids("iso27001")),
            control.details.len()
        ));
    }
    out
}

/// The gzipped tarball of the signed pack of `files` for `release`.
pub fn tarball(
    release: &Release,
    files: &[(String, Vec<u8>)],
    key: &SigningKey,
) -> Result<Vec<u8>, String> {
    let staging = tempfile::tempdir().map_err(|err| err.to_string())?;
    let created = release
        .created
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    write_pack(
        staging.path(),
        &release.tag,
        &created,
        "patrol evidence-audit pack v1",
        files,
        key,
    )
    .map_err(|err| err.to_string())?;
    let mut paths = Vec::new();
    collect(staging.path(), staging.path(), &mut paths).map_err(|err| err.to_string())?;
    paths.sort();
    let root = format!("audit-pack-{}", release.tag);
    let gzip = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gzip);
    for path in paths {
        let bytes = std::fs::read(staging.path().join(&path)).map_err(|err| err.to_string())?;
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, format!("{root}/{path}"), &bytes[..])
            .map_err(|err| err.to_string())?;
    }
    let gzip = tar.into_inner().map_err(|err| err.to_string())?;
    gzip.finish().map_err(|err| err.to_string())
}

/// Builds the pack of `tag` from the schedule's setup: the release folder,
/// a fresh evaluation, the attestation if there is one.
pub fn build(
    catalog: &Catalog,
    releases: &Path,
    attestations: Option<&Path>,
    tag: &str,
    inputs: &Inputs,
    key: &SigningKey,
) -> Result<Vec<u8>, String> {
    evaluate::check_tag(tag)?;
    let folder: PathBuf = releases.join(tag);
    if !folder.is_dir() {
        return Err(format!("{}: no such release folder", folder.display()));
    }
    let release = evaluate::release_of(&folder)?;
    // As of the release's time: the same folder gives the same pack.
    let created = release.created.ok_or_else(|| {
        format!(
            "{}: no `created` time, which dates the pack",
            folder.join("release.json").display()
        )
    })?;
    let inputs = Inputs {
        now: created,
        ..inputs.clone()
    };
    let report = evaluate::evaluate(catalog, &folder, &release, &inputs);
    // Attestations are filed under release.json's tag.
    let attestation = attestations.map(|dir| dir.join(&release.tag));
    let files = pack_files(catalog, &folder, &release, &report, attestation.as_deref())?;
    tarball(&release, &files, key)
}
