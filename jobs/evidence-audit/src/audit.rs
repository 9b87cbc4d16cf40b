//! The quarterly evidence audit (seed 003 D90): a random share of a
//! period's releases, drawn reproducibly, each re-verified — its evidence
//! still present, its control attestation signed, naming its artifacts,
//! and its recorded verdicts equal to the controls re-evaluated now.
//!
//! The draw: each release of the period is ranked by SHA-256(`seed` ":"
//! tag) (hex, ascending) and the first ⌈share × count⌉ (at least one) are
//! sampled. The seed and the ranking are in the report, so anyone can
//! redraw the same sample with `sha256sum`.

use std::path::PathBuf;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use patrol_provmon_verify::key::PublicKey;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::dsse;
use crate::evaluate::{self, Inputs, Release};

/// A calendar quarter (`2026Q4`) or year (`2026`), in UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    pub name: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

fn start_of(year: i32, month: u32) -> Option<DateTime<Utc>> {
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).single()
}

/// Reads `2026Q4`, `2026` or `previous` (the quarter before `now`'s).
pub fn parse_period(text: &str, now: DateTime<Utc>) -> Result<Period, String> {
    let text = text.trim();
    let quarter = |year: i32, q: u32| -> Result<Period, String> {
        let start = start_of(year, 3 * q - 2).ok_or("bad year")?;
        let end = if q == 4 {
            start_of(year + 1, 1)
        } else {
            start_of(year, 3 * q + 1)
        }
        .ok_or("bad year")?;
        Ok(Period {
            name: format!("{year}Q{q}"),
            start,
            end,
        })
    };
    if text == "previous" {
        let q = (now.month() - 1) / 3 + 1;
        return if q == 1 {
            quarter(now.year() - 1, 4)
        } else {
            quarter(now.year(), q - 1)
        };
    }
    if let Some((year, q)) = text.split_once(['Q', 'q']) {
        let year: i32 = year.parse().map_err(|_| format!("`{text}`: not a year"))?;
        let q: u32 = q
            .parse()
            .ok()
            .filter(|q| (1..=4).contains(q))
            .ok_or(format!("`{text}`: quarter 1–4"))?;
        return quarter(year, q);
    }
    let year: i32 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a period: 2026Q4, 2026 or previous"))?;
    Ok(Period {
        name: text.to_string(),
        start: start_of(year, 1).ok_or("bad year")?,
        end: start_of(year + 1, 1).ok_or("bad year")?,
    })
}

/// Reads `10%` or `0.1` as a share in (0, 1].
pub fn parse_share(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let share = match text.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map(|p| p / 100.0),
        None => text.parse::<f64>(),
    }
    .map_err(|_| format!("`{text}` is not a share (10% or 0.1)"))?;
    if share > 0.0 && share <= 1.0 {
        Ok(share)
    } else {
        Err(format!(
            "`{text}`: the share must be above 0 and at most 100%"
        ))
    }
}

/// The rank of `tag` in the draw of `seed`.
pub fn rank(seed: &str, tag: &str) -> String {
    hex::encode(Sha256::digest(format!("{seed}:{tag}")))
}

/// The sampled tags, in draw order.
pub fn sample(tags: &[String], share: f64, seed: &str) -> Vec<String> {
    if tags.is_empty() {
        return Vec::new();
    }
    // In basis points, so 7% of 100 is 7 (not ⌈7.000000000000001⌉ = 8).
    let basis_points = (share * 10_000.0).round() as usize;
    let count = (basis_points * tags.len())
        .div_ceil(10_000)
        .clamp(1, tags.len());
    let mut ranked: Vec<(String, &String)> = tags.iter().map(|t| (rank(seed, t), t)).collect();
    ranked.sort();
    ranked
        .into_iter()
        .take(count)
        .map(|(_, t)| t.clone())
        .collect()
}

/// What the audit needs.
#[derive(Debug, Clone)]
pub struct Setup {
    pub catalog: Catalog,
    pub releases: PathBuf,
    /// Where the control attestations are (`<dir>/<tag>/…`).
    pub attestations: Option<PathBuf>,
    /// Keys the releases' own provenance is signed with.
    pub evidence_keys: Vec<PublicKey>,
    /// Keys control attestations are signed with.
    pub attestation_keys: Vec<PublicKey>,
}

/// One problem with a sampled release.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// `evidence-missing-artifact`, `attestation-invalid` or
    /// `control-regressed`.
    pub reason: &'static str,
    pub detail: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReleaseAudit {
    pub release: String,
    pub rank: String,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub period: Period,
    pub seed: String,
    pub share: f64,
    /// The period's releases (tags).
    pub releases: Vec<String>,
    pub sampled: Vec<ReleaseAudit>,
    pub passed: usize,
    pub failed: usize,
    /// Release folders that could not be read.
    pub errors: Vec<String>,
}

/// Runs the audit.
pub fn audit(
    setup: &Setup,
    period: &Period,
    share: f64,
    seed: &str,
    now: DateTime<Utc>,
) -> Result<AuditReport, String> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&setup.releases)
        .map_err(|err| format!("{}: {err}", setup.releases.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    let mut in_period = Vec::new();
    let mut errors = Vec::new();
    for folder in folders {
        match evaluate::release_of(&folder) {
            Ok(release) => {
                let twin = in_period
                    .iter()
                    .find(|(_, r): &&(PathBuf, Release)| r.tag == release.tag);
                if let Some((first, _)) = twin {
                    errors.push(format!(
                        "{} and {} both hold release {}",
                        first.display(),
                        folder.display(),
                        release.tag
                    ));
                } else if release
                    .created
                    .is_some_and(|t| t >= period.start && t < period.end)
                {
                    in_period.push((folder, release));
                }
            }
            Err(err) => errors.push(err),
        }
    }
    let tags: Vec<String> = in_period.iter().map(|(_, r)| r.tag.clone()).collect();
    let chosen = sample(&tags, share, seed);
    let inputs = Inputs {
        attestation_keys: setup.evidence_keys.clone(),
        now,
    };
    let sampled: Vec<ReleaseAudit> = chosen
        .iter()
        .filter_map(|tag| in_period.iter().find(|(_, r)| &r.tag == tag))
        .map(|(folder, release)| ReleaseAudit {
            release: release.tag.clone(),
            rank: rank(seed, &release.tag),
            problems: check_release(setup, folder, release, &inputs),
        })
        .collect();
    let failed = sampled.iter().filter(|r| !r.problems.is_empty()).count();
    Ok(AuditReport {
        period: period.clone(),
        seed: seed.to_string(),
        share,
        releases: tags,
        passed: sampled.len() - failed,
        failed,
        sampled,
        errors,
    })
}

fn check_release(
    setup: &Setup,
    folder: &std::path::Path,
    release: &Release,
    inputs: &Inputs,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let now = evaluate::evaluate(&setup.catalog, folder, release, inputs);
    for control in &now.controls {
        for detail in control
            .details
            .iter()
            .filter(|d| d.get("missing").is_some())
        {
            problems.push(Problem {
                reason: "evidence-missing-artifact",
                detail: json!({"control": control.id, "missing": detail["missing"]}),
            });
        }
    }
    let Some(dir) = &setup.attestations else {
        return problems;
    };
    let invalid = |why: String| Problem {
        reason: "attestation-invalid",
        detail: json!({"problem": why}),
    };
    let folder = dir.join(&release.tag);
    let envelope = match std::fs::read(folder.join("control-attestation.intoto.json")) {
        Ok(bytes) => bytes,
        Err(err) => {
            problems.push(invalid(format!("no control attestation: {err}")));
            return problems;
        }
    };
    let verified = match dsse::verify(&envelope, &setup.attestation_keys) {
        Ok(verified) => verified,
        Err(why) => {
            problems.push(invalid(why));
            return problems;
        }
    };
    if verified.predicate_type != crate::attestation::PREDICATE_TYPE {
        problems.push(invalid(format!(
            "predicate type {}",
            verified.predicate_type
        )));
    }
    let subjects: Vec<(String, String)> = verified
        .subjects
        .iter()
        .map(|s| (s.name.clone(), s.sha256.clone()))
        .collect();
    let artifacts: Vec<(String, String)> = release
        .artifacts
        .iter()
        .map(|a| (a.name.clone(), a.sha256.to_lowercase()))
        .collect();
    if subjects != artifacts {
        problems.push(invalid(format!(
            "its subjects {subjects:?} are not the release's artifacts {artifacts:?}"
        )));
    }
    if verified.statement["predicate"]["release"] != release.tag.as_str() {
        problems.push(invalid(format!(
            "it attests release {}, not {}",
            verified.statement["predicate"]["release"], release.tag
        )));
    }
    // The PDF names the digest of the payload it renders.
    let payload_sha256 = hex::encode(Sha256::digest(
        serde_json::to_vec(&verified.statement).unwrap_or_default(),
    ));
    let pdf_ok = std::fs::read(folder.join("control-attestation.pdf"))
        .ok()
        .zip(std::fs::read_to_string(folder.join("control-attestation.pdf.sig")).ok());
    match pdf_ok {
        Some((pdf, _)) if !contains(&pdf, payload_sha256.as_bytes()) => problems.push(invalid(
            "the PDF is not the rendering of this attestation".into(),
        )),
        Some((pdf, sig))
            if setup.attestation_keys.iter().any(|k| {
                patrol_provmon_verify::cosign::verify_with_key(k, &pdf, sig.trim()).is_verified()
            }) => {}
        Some(_) => problems.push(invalid("the PDF's signature does not verify".into())),
        None => problems.push(invalid("the PDF or its signature is missing".into())),
    }
    let recorded = verified.statement["predicate"]["controls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for control in &now.controls {
        let was = recorded
            .iter()
            .find(|c| c["id"] == control.id.as_str())
            .and_then(|c| c["pass"].as_bool());
        if was == Some(true) && !control.pass {
            problems.push(Problem {
                reason: "control-regressed",
                detail: json!({"control": control.id, "recorded": true, "now": false, "details": control.details}),
            });
        }
    }
    problems
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The report as Markdown.
pub fn markdown(report: &AuditReport) -> String {
    let mut out = format!(
        "# Evidence audit {}\n\nPeriod {} – {} (UTC). Seed `{}`; share {:.1}%: {} of {} release(s) sampled; {} passed, {} failed.\n\nRedraw: rank each release of the period by `sha256(seed:tag)` and take the lowest.\n\n| release | rank | verdict | problems |\n|---|---|---|---|\n",
        report.period.name,
        report.period.start.to_rfc3339(),
        report.period.end.to_rfc3339(),
        report.seed,
        report.share * 100.0,
        report.sampled.len(),
        report.releases.len(),
        report.passed,
        report.failed
    );
    for release in &report.sampled {
        let problems: Vec<String> = release
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.reason, p.detail))
            .collect();
        out.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            release.release,
            &release.rank[..16],
            if release.problems.is_empty() {
                "pass"
            } else {
                "FAIL"
            },
            problems.join("<br>").replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_and_shares_are_read_and_checked() {
        let now = Utc.with_ymd_and_hms(2027, 1, 3, 0, 0, 0).unwrap();
        let q4 = parse_period("2026Q4", now).unwrap();
        assert_eq!(
            (q4.start.month(), q4.end.year(), q4.end.month()),
            (10, 2027, 1)
        );
        assert_eq!(parse_period("previous", now).unwrap(), q4);
        assert!(parse_period("2026Q5", now).is_err());
        assert_eq!(parse_share("10%").unwrap(), 0.1);
        assert!(parse_share("0").is_err() && parse_share("150%").is_err());
    }

    #[test]
    fn the_draw_is_reproducible_covers_the_share_and_depends_on_the_seed() {
        let tags: Vec<String> = (0..95).map(|i| format!("v1.{i}.0")).collect();
        let a = sample(&tags, 0.1, "2026Q4-audit");
        assert_eq!(a.len(), 10, "⌈9.5⌉");
        assert_eq!(a, sample(&tags, 0.1, "2026Q4-audit"));
        assert_ne!(a, sample(&tags, 0.1, "another seed"));
        assert_eq!(sample(&tags[..3], 0.1, "s").len(), 1, "at least one");
        let hundred: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
        assert_eq!(sample(&hundred, parse_share("7%").unwrap(), "s").len(), 7);
        // The draw is the documented one: the lowest sha256(seed:tag).
        let mut ranked: Vec<(String, String)> = tags
            .iter()
            .map(|t| {
                (
                    hex::encode(Sha256::digest(format!("2026Q4-audit:{t}"))),
                    t.clone(),
                )
            })
            .collect();
        ranked.sort();
        assert_eq!(
            a,
            ranked
                .into_iter()
                .take(10)
                .map(|(_, t)| t)
                .collect::<Vec<_>>()
        );
    }
}
