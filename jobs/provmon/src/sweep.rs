//! One sweep: new events → delta chains → merged with the chains in state
//! → rules → findings and state writes.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use patrol_job_api::units::HumanDuration;
use patrol_job_api::{CancellationToken, JobError, JobState, Outcome, RunReport, StateWrite};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::chain::{Chains, DigestChain, ReleaseChain, Unit};
use crate::evaluate::{evaluate, Verifying, Watch};
use crate::event::{Event, Stage};
use crate::http_source::{fetch, read_body, HttpBody, HttpCursor};
use crate::ingest::{Ingest, ParseStats};
use crate::rules::{Condition, Rule};
use crate::source::{read_files, FilesCursor, SourceStats};
use crate::verify::Verifier;
use crate::SourceSpec;

const ACTIVE_KEY: &str = "active";

fn cursor_key(source: &str) -> String {
    format!("cursor/{source}")
}

fn unit_key(unit: &Unit) -> String {
    match unit {
        Unit::Digest(digest) => format!("digest/{digest}"),
        Unit::Release(sha) => format!("release/{sha}"),
    }
}

/// What a sweep needs besides the state.
#[derive(Debug, Clone)]
pub struct SweepInput {
    pub sources: Vec<SourceSpec>,
    pub rules: Vec<Rule>,
    pub verifier: Verifier,
    pub max_events: u64,
    pub now: DateTime<Utc>,
}

/// What reading the sources produced.
struct Read {
    delta: Chains,
    /// Each source's new cursor, encoded.
    cursors: Vec<(String, Vec<u8>)>,
    stats: BTreeMap<String, SourceStats>,
    failed: BTreeMap<String, String>,
}

fn state_err(err: impl std::fmt::Display) -> JobError {
    JobError::Failed(format!("cannot read provmon state: {err}"))
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, JobError> {
    serde_json::from_slice(bytes)
        .map_err(|err| JobError::Failed(format!("provmon state `{key}` is unreadable: {err}")))
}

fn encode(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Runs one sweep against `state`.
pub async fn sweep(
    state: &JobState,
    input: SweepInput,
    cancel: &CancellationToken,
) -> Result<RunReport, JobError> {
    let keys: Vec<String> = input
        .sources
        .iter()
        .map(|source| cursor_key(source.name()))
        .chain([ACTIVE_KEY.to_string()])
        .collect();
    let stored = state.get_many(&keys).await.map_err(state_err)?;
    let mut inputs = Vec::new();
    for source in &input.sources {
        let key = cursor_key(source.name());
        let stored = stored.get(&key);
        let input = match source {
            SourceSpec::Files { .. } => SourceInput::Files(match stored {
                Some(bytes) => decode(&key, bytes)?,
                None => FilesCursor::default(),
            }),
            SourceSpec::Http { url, timeout, .. } => {
                let cursor: HttpCursor = match stored {
                    Some(bytes) => decode(&key, bytes)?,
                    None => HttpCursor::default(),
                };
                let timeout = timeout
                    .as_deref()
                    .and_then(|t| HumanDuration::parse(t).ok())
                    .map_or(std::time::Duration::from_secs(30), |t| t.0);
                let body = fetch(url, &cursor, timeout).await;
                SourceInput::Http(cursor, body)
            }
        };
        inputs.push((source.clone(), input));
    }
    let active: Vec<Unit> = match stored.get(ACTIVE_KEY) {
        Some(bytes) => decode(ACTIVE_KEY, bytes)?,
        None => Vec::new(),
    };

    let started = std::time::Instant::now();
    let max_events = input.max_events;
    let read = tokio::task::spawn_blocking(move || read_sources(inputs, max_events))
        .await
        .map_err(|err| JobError::Failed(format!("reading events failed: {err}")))?;
    if cancel.is_cancelled() {
        return Ok(RunReport::new(
            Outcome::Cancelled,
            "cancelled while reading events",
        ));
    }

    let read_ms = started.elapsed().as_millis();
    let mut chains = load(state, &read.delta, &active, &input.rules).await?;
    let load_ms = started.elapsed().as_millis() - read_ms;
    let new_units = read.delta.digests.len() + read.delta.releases.len();
    chains.absorb(read.delta);
    let search = overdue_for_rekor(&input.rules, &chains, input.now);
    let verified = input.verifier.verify(&mut chains, &search, input.now).await;
    let verifying = Verifying {
        signatures: input.verifier.checks_signatures(),
        rekor: input.verifier.checks_rekor(),
    };
    let evaluation = evaluate(&input.rules, &chains, verifying, input.now);
    let evaluate_ms = started.elapsed().as_millis() - read_ms - load_ms;

    let (mut writes, changed) = encode_changed(&chains);
    for rev in &chains.dirty_revs {
        if let Some(digest) = chains.revs.get(rev) {
            writes.push(StateWrite::put(
                format!("rev/{rev}"),
                digest.clone().into_bytes(),
            ));
        }
    }
    for rev in &chains.dirty_unlinked {
        let key = format!("unlinked/{rev}");
        writes.push(match chains.unlinked.get(rev) {
            Some(events) => StateWrite::put(key, encode(events)),
            None => StateWrite::delete(key),
        });
    }
    let watched: Vec<&Unit> = evaluation.active.keys().collect();
    writes.push(StateWrite::put(ACTIVE_KEY, encode(&watched)));
    for (name, cursor) in &read.cursors {
        writes.push(StateWrite::put(cursor_key(name), cursor.clone()));
    }

    let encode_ms = started.elapsed().as_millis() - read_ms - load_ms - evaluate_ms;
    let events: u64 = read.stats.values().map(|stats| stats.events).sum();
    let malformed: u64 = read.stats.values().map(|stats| stats.malformed).sum();
    let pending = evaluation
        .active
        .values()
        .filter(|watch| matches!(watch, Watch::Pending { .. }))
        .count();
    let mut summary = format!(
        "{events} events from {} sources, {} chains updated, {} findings, {pending} windows open",
        read.stats.len(),
        changed,
        evaluation.findings.len()
    );
    if malformed > 0 {
        let per_source: Vec<String> = read
            .stats
            .iter()
            .filter(|(_, stats)| stats.malformed > 0)
            .map(|(name, stats)| format!("{name}: {}", stats.malformed))
            .collect();
        summary.push_str(&format!(
            "; {malformed} malformed ({})",
            per_source.join(", ")
        ));
    }
    if let Some(outage) = &verified.outage {
        summary.push_str(&format!(
            "; degraded: {} Rekor checks wait ({outage})",
            verified.unavailable
        ));
    }
    if !read.failed.is_empty() {
        let failed: Vec<String> = read
            .failed
            .iter()
            .map(|(name, error)| format!("{name}: {error}"))
            .collect();
        summary.push_str(&format!("; sources unreadable: {}", failed.join("; ")));
    }
    let mut report = RunReport::new(Outcome::Succeeded, summary);
    report.details = serde_json::json!({
        "sources": read.stats,
        "failed_sources": read.failed,
        "events": events,
        "malformed": malformed,
        "chains_new_or_changed": new_units,
        "chains_evaluated": chains.digests.len() + chains.releases.len(),
        "watching": evaluation.active.len(),
        "verification": verified,
        "timings_ms": {
            "read_and_correlate": read_ms,
            "load_state": load_ms,
            "merge_and_evaluate": evaluate_ms,
            "encode_state": encode_ms,
        },
    });
    // A source we could not read may hold the events that clear a finding:
    // report what holds, but resolve nothing.
    report.findings_partial = !read.failed.is_empty() || verified.unavailable > 0;
    report.findings = evaluation.findings;
    report.state = writes;
    // Freeing a big sweep's chains takes a while; nothing waits for it.
    tokio::task::spawn_blocking(move || drop(chains));
    Ok(report)
}

/// State writes for every chain that changed, encoded on every core (a
/// first sweep over a long history changes hundreds of thousands).
/// Returns them and how many chains changed.
/// Digests signed longer ago than a `sign -> (no rekor …)` window with no
/// Rekor entry seen: Rekor is searched for them before paging.
fn overdue_for_rekor(rules: &[Rule], chains: &Chains, now: DateTime<Utc>) -> Vec<String> {
    let Some(window) = rules
        .iter()
        .filter_map(|rule| match rule.condition {
            Condition::Absent {
                after: Stage::Sign,
                expected: Stage::Rekor,
                within,
            } => Some(within),
            _ => None,
        })
        .min()
    else {
        return Vec::new();
    };
    let window = chrono::Duration::from_std(window).unwrap_or_default();
    chains
        .digests
        .iter()
        .filter(|(_, chain)| !chain.stages.contains_key(&Stage::Rekor))
        .filter(|(_, chain)| {
            chain
                .stages
                .get(&Stage::Sign)
                .is_some_and(|sign| sign.first + window <= now)
        })
        .map(|(digest, _)| digest.clone())
        .collect()
}

fn encode_changed(chains: &Chains) -> (Vec<StateWrite>, usize) {
    let digests: Vec<(&String, &DigestChain)> = chains
        .digests
        .iter()
        .filter(|(_, chain)| chain.changed)
        .collect();
    let releases: Vec<(&String, &ReleaseChain)> = chains
        .releases
        .iter()
        .filter(|(_, release)| release.changed)
        .collect();
    let changed = digests.len() + releases.len();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = digests.len().div_ceil(threads).max(1);
    let mut writes: Vec<StateWrite> = std::thread::scope(|scope| {
        let handles: Vec<_> = digests
            .chunks(per_thread)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(digest, chain)| {
                            StateWrite::put(format!("digest/{digest}"), encode(chain))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap_or_default())
            .collect()
    });
    writes.extend(
        releases
            .iter()
            .map(|(sha, release)| StateWrite::put(format!("release/{sha}"), encode(release))),
    );
    (writes, changed)
}

/// A source and where it stopped (for `http`, also what it answered).
enum SourceInput {
    Files(FilesCursor),
    Http(HttpCursor, Result<HttpBody, String>),
}

fn read_sources(inputs: Vec<(SourceSpec, SourceInput)>, max_events: u64) -> Read {
    let mut ingest = Ingest::new(inputs.len());
    let mut cursors_out = Vec::new();
    let mut failed = BTreeMap::new();
    let mut read_stats = Vec::new();
    let mut budget = max_events;
    for (index, (source, input)) in inputs.iter().enumerate() {
        let name = source.name().to_string();
        ingest.start_source(index);
        let mut stats = SourceStats::default();
        match (source, input) {
            (SourceSpec::Files { path, .. }, SourceInput::Files(cursor)) => {
                match read_files(path, cursor, budget, &mut stats, &mut ingest) {
                    Ok(next) => cursors_out.push((name.clone(), encode(&next))),
                    // Lines handed over before the error are correlated but
                    // the cursor stays: they are read again next sweep, and
                    // merging the same event twice changes no verdict.
                    Err(err) => {
                        failed.insert(name.clone(), format!("{}: {err}", path.display()));
                    }
                }
            }
            (_, SourceInput::Http(cursor, Ok(body))) => {
                let next = read_body(&name, body, cursor, budget, &mut stats, &mut ingest);
                cursors_out.push((name.clone(), encode(&next)));
            }
            (_, SourceInput::Http(_, Err(err))) => {
                failed.insert(name.clone(), err.clone());
            }
            (SourceSpec::Http { .. }, SourceInput::Files(_)) => {
                failed.insert(
                    name.clone(),
                    "internal: source and cursor kinds differ".into(),
                );
            }
        }
        budget = budget.saturating_sub(stats.lines);
        read_stats.push((name, stats));
    }
    let (delta, parsed) = match ingest.finish() {
        Ok(done) => done,
        Err(err) => {
            // Keep every cursor: all of it is read again next sweep.
            for (name, _) in &read_stats {
                failed.insert(name.clone(), err.clone());
            }
            cursors_out.clear();
            (Chains::default(), Vec::new())
        }
    };
    let stats = read_stats
        .into_iter()
        .zip(
            parsed
                .into_iter()
                .chain(std::iter::repeat_with(ParseStats::default)),
        )
        .map(|((name, mut stats), parsed)| {
            stats.events = parsed.events;
            stats.malformed = parsed.malformed;
            stats.samples = parsed
                .samples
                .into_iter()
                .map(|(file, line, problem)| format!("{file}:{line}: {problem}"))
                .collect();
            (name, stats)
        })
        .collect();
    Read {
        delta,
        cursors: cursors_out,
        stats,
        failed,
    }
}

/// Loads from state the chains the new events touch and those watched,
/// and for releases the digests their rules look into.
async fn load(
    state: &JobState,
    delta: &Chains,
    active: &[Unit],
    rules: &[Rule],
) -> Result<Chains, JobError> {
    let mut chains = Chains::default();
    let mut units: BTreeSet<Unit> = delta.touched().into_iter().collect();
    units.extend(active.iter().cloned());
    let mut keys: Vec<String> = units.iter().map(unit_key).collect();
    keys.extend(delta.unlinked.keys().map(|rev| format!("rev/{rev}")));
    keys.extend(delta.revs.keys().map(|rev| format!("unlinked/{rev}")));
    let found = state.get_many(&keys).await.map_err(state_err)?;
    for (key, bytes) in &found {
        insert(&mut chains, key, bytes)?;
    }
    let release_rules = rules.iter().any(|rule| {
        matches!(rule.condition, Condition::Absent { after, .. } if after.is_release_level())
    });
    if release_rules {
        let mut digests: BTreeSet<String> = chains
            .releases
            .values()
            .chain(delta.releases.values())
            .flat_map(|release| release.digests.iter().cloned())
            .collect();
        digests.retain(|digest| {
            !chains.digests.contains_key(digest) && !delta.digests.contains_key(digest)
        });
        let keys: Vec<String> = digests.iter().map(|d| format!("digest/{d}")).collect();
        for (key, bytes) in &state.get_many(&keys).await.map_err(state_err)? {
            insert(&mut chains, key, bytes)?;
        }
    }
    Ok(chains)
}

fn insert(chains: &mut Chains, key: &str, bytes: &[u8]) -> Result<(), JobError> {
    if let Some(digest) = key.strip_prefix("digest/") {
        let chain: DigestChain = decode(key, bytes)?;
        chains.digests.insert(digest.to_string(), chain);
    } else if let Some(sha) = key.strip_prefix("release/") {
        let release: ReleaseChain = decode(key, bytes)?;
        chains.releases.insert(sha.to_string(), release);
    } else if let Some(rev) = key.strip_prefix("rev/") {
        chains
            .revs
            .insert(rev.to_string(), String::from_utf8_lossy(bytes).into_owned());
    } else if let Some(rev) = key.strip_prefix("unlinked/") {
        let events: Vec<Event<'_>> = serde_json::from_slice(bytes).map_err(|err| {
            JobError::Failed(format!("provmon state `{key}` is unreadable: {err}"))
        })?;
        let events = events.into_iter().map(Event::into_owned).collect();
        chains.unlinked.insert(rev.to_string(), events);
    }
    Ok(())
}
