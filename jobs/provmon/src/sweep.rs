//! One sweep: new events → delta chains → merged with the chains in state
//! → rules → findings and state writes.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use patrol_job_api::{
    state_key, CancellationToken, Finding, JobError, JobState, Outcome, Performed, RunReport,
    StateError, StateKey, StatePrefix, StateWrite,
};
use patrol_job_kit::http_auth::{header_pairs, resolve_for_run};
use patrol_provmon_verify::rekor::LogEntry;
use serde::Serialize;

use crate::chain::{Chains, DigestChain, ReleaseChain, Unit};
use crate::evaluate::{evaluate, Verifying, Watch};
use crate::event::{Event, Horizon, Stage};
use crate::evidence::{
    due_releases, folder_name, pack_files, EvidenceStats, EvidenceWriter, PackInput,
};
use crate::github_source::{GithubCursor, GithubRead};
use crate::http_source::{fetch, read_body, HttpBody, HttpCursor};
use crate::ingest::{BundleCheck, Ingest, ParseStats, SAMPLES};
use crate::outage::RekorOutage;
use crate::rules::{Condition, Rule};
use crate::source::LineSink;
use crate::source::{read_files, FilesCursor, SourceStats};
use crate::verify::Verifier;
use crate::{github_client, SourceSpec};

// The sweep's state, one JSON value per key (`patrol_job_api::state_key`).
/// The units whose rules still wait for something.
const ACTIVE: StateKey<Vec<Unit>> = StateKey::new("active");
/// Releases whose evidence pack is still to be written.
const EVIDENCE_PENDING: StateKey<Vec<String>> = StateKey::new("evidence/pending");
const DIGESTS: StatePrefix<DigestChain> = StatePrefix::new("digest/");
const RELEASES: StatePrefix<ReleaseChain> = StatePrefix::new("release/");
/// deploy_rev → digest. Older versions stored the digest as bare text.
const REVS: StatePrefix<String> = StatePrefix::with_legacy("rev/", bare_text);
/// Runtime verifies waiting for their rev to be linked.
const UNLINKED: StatePrefix<Vec<Event<'static>>> = StatePrefix::new("unlinked/");
/// When the Rekor outage that still lasts was first met (absent: none).
const REKOR_OUTAGE_SINCE: StateKey<DateTime<Utc>> = StateKey::new("rekor-outage/since");
/// Where judging every kept chain under a new verification policy stands.
const REJUDGE: StateKey<Rejudge> = StateKey::new("verify/rejudge");
/// Chains re-judged per sweep after a policy change: bounded memory and a
/// bounded sweep, however many chains the state holds.
const REJUDGE_BATCH: usize = 5_000;

/// Kept verdicts rest on the policy that gave them; when the policy changes
/// (a key removed, a trusted root replaced), every kept chain is loaded
/// and judged again, a batch per sweep, not only the chains new events
/// touch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
struct Rejudge {
    /// The fingerprint every kept chain has been judged under.
    policy: String,
    /// While a pass is under way: its policy, and the last chain judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pass: Option<(String, Option<String>)>,
}

/// A `rev/` row as versions before typed keys wrote it: the digest's
/// UTF-8 text, unquoted.
fn bare_text(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|text| !text.starts_with('"'))
        .map(str::to_string)
}
/// Most packs written per sweep; the rest wait (a first sweep over a long
/// history touches every release).
const MAX_PACKS_PER_SWEEP: usize = 2000;

fn cursor_key(source: &str) -> String {
    format!("cursor/{source}")
}

fn unit_key(unit: &Unit) -> String {
    match unit {
        Unit::Digest(digest) => DIGESTS.key(digest).name().to_string(),
        Unit::Release(sha) => RELEASES.key(sha).name().to_string(),
    }
}

/// A source's cursor, stored as the JSON of the cursor itself.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum SourceCursor {
    Files(FilesCursor),
    Http(HttpCursor),
    Github(GithubCursor),
}

/// What a sweep needs besides the state.
#[derive(Debug, Clone)]
pub struct SweepInput {
    pub sources: Vec<SourceSpec>,
    pub rules: Vec<Rule>,
    pub verifier: Verifier,
    pub evidence: Option<EvidenceWriter>,
    pub max_events: u64,
    pub now: DateTime<Utc>,
    /// Events dated more than this after `now` are malformed.
    pub max_clock_skew: std::time::Duration,
    /// Rekor unreachable for longer than this pages `provmon/rekor-unreachable`.
    pub rekor_outage_page_after: std::time::Duration,
}

/// What reading the sources produced.
struct Read {
    delta: Chains,
    /// Each source's new cursor.
    cursors: Vec<(String, SourceCursor)>,
    stats: BTreeMap<String, SourceStats>,
    failed: BTreeMap<String, String>,
    bundles_checked: u64,
}

fn state_err(err: impl std::fmt::Display) -> JobError {
    JobError::Failed(format!("cannot read provmon state: {err}"))
}

/// An entry that does not decode, or a value that does not serialize,
/// fails the sweep naming the key: nothing is dropped or written empty.
fn state_failed(err: StateError) -> JobError {
    JobError::Failed(format!("provmon {err}"))
}

/// `key`'s value among `stored`, or the default when it is not stored.
fn stored_or_default<T: serde::de::DeserializeOwned + Default>(
    stored: &std::collections::HashMap<String, Vec<u8>>,
    key: &StateKey<T>,
) -> Result<T, JobError> {
    match stored.get(key.name()) {
        Some(bytes) => key.decode(bytes).map_err(state_failed),
        None => Ok(T::default()),
    }
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
        .chain([
            ACTIVE.name().to_string(),
            EVIDENCE_PENDING.name().to_string(),
            REKOR_OUTAGE_SINCE.name().to_string(),
            REJUDGE.name().to_string(),
        ])
        .collect();
    let stored = state.get_many(&keys).await.map_err(state_err)?;
    let mut inputs = Vec::new();
    for source in &input.sources {
        let key = cursor_key(source.name());
        let stored = stored.get(&key);
        let input = match source {
            SourceSpec::Files { .. } => SourceInput::Files(match stored {
                Some(bytes) => StateKey::named(key).decode(bytes).map_err(state_failed)?,
                None => FilesCursor::default(),
            }),
            SourceSpec::Http {
                url,
                timeout,
                headers,
                ..
            } => {
                let cursor: HttpCursor = match stored {
                    Some(bytes) => StateKey::named(key).decode(bytes).map_err(state_failed)?,
                    None => HttpCursor::default(),
                };
                let timeout = timeout
                    .as_ref()
                    .map_or(std::time::Duration::from_secs(30), |t| t.0);
                // Read at every sweep: a rotated token file takes effect
                // without a reload.
                let body = match resolve_for_run(headers) {
                    Ok(headers) => fetch(url, &header_pairs(&headers), &cursor, timeout).await,
                    Err(problem) => Err(problem),
                };
                SourceInput::Http(cursor, body)
            }
            SourceSpec::Github { .. } => {
                let cursor: GithubCursor = match stored {
                    Some(bytes) => StateKey::named(key).decode(bytes).map_err(state_failed)?,
                    None => GithubCursor::default(),
                };
                match github_client(source, "sources") {
                    Ok(client) => SourceInput::Github(client.read(&cursor).await),
                    Err(problems) => SourceInput::Github(GithubRead {
                        cursor,
                        errors: problems.iter().map(ToString::to_string).collect(),
                        ..GithubRead::default()
                    }),
                }
            }
        };
        inputs.push((source.clone(), input));
    }
    let active = stored_or_default(&stored, &ACTIVE)?;
    let evidence_pending = stored_or_default(&stored, &EVIDENCE_PENDING)?;
    let outage_since = match stored.get(REKOR_OUTAGE_SINCE.name()) {
        Some(bytes) => Some(REKOR_OUTAGE_SINCE.decode(bytes).map_err(state_failed)?),
        None => None,
    };

    let started = std::time::Instant::now();
    let max_events = input.max_events;
    let bundles = input.verifier.bundles.clone().map(|verifier| BundleCheck {
        verifier,
        now: input.now,
    });
    let horizon = Horizon {
        now: input.now,
        max_skew: input.max_clock_skew,
    };
    let read =
        tokio::task::spawn_blocking(move || read_sources(inputs, max_events, bundles, horizon))
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
    let rejudge = stored_or_default(&stored, &REJUDGE)?;
    let rejudged =
        rejudge_batch(state, &rejudge, input.verifier.fingerprint(), &mut chains).await?;
    let load_ms = started.elapsed().as_millis() - read_ms;
    let new_units = read.delta.digests.len() + read.delta.releases.len();
    chains.absorb(read.delta);
    let search = overdue_for_rekor(&input.rules, &chains, input.now);
    let mut verified = input.verifier.verify(&mut chains, &search, input.now).await;
    verified.bundles_checked = read.bundles_checked;
    let verifying = Verifying {
        signatures: input.verifier.checks_signatures(),
        rekor: input.verifier.checks_rekor(),
        bundles: input.verifier.checks_bundles(),
    };
    let mut evaluation = evaluate(&input.rules, &chains, verifying, input.now);
    let outage = RekorOutage::after_sweep(outage_since, &verified, input.now);
    if let Some(finding) = outage.finding(input.rekor_outage_page_after, input.now) {
        evaluation.findings.push(finding);
    }
    let evaluate_ms = started.elapsed().as_millis() - read_ms - load_ms;
    let evidence = match &input.evidence {
        Some(writer) => {
            let job = EvidenceJob {
                writer,
                verifier: &input.verifier,
                findings: &evaluation.findings,
                now: input.now,
            };
            Some(
                job.run(state, &chains, &verified.entries, &evidence_pending)
                    .await?,
            )
        }
        None => None,
    };

    let (mut writes, changed) = encode_changed(&chains).map_err(state_failed)?;
    for rev in &chains.dirty_revs {
        if let Some(digest) = chains.revs.get(rev) {
            writes.push(REVS.key(rev).put(digest).map_err(state_failed)?);
        }
    }
    for rev in &chains.dirty_unlinked {
        let key = UNLINKED.key(rev);
        writes.push(match chains.unlinked.get(rev) {
            Some(events) => key.put(events).map_err(state_failed)?,
            None => key.delete(),
        });
    }
    if let Some(evidence) = &evidence {
        writes.push(
            EVIDENCE_PENDING
                .put(&evidence.pending)
                .map_err(state_failed)?,
        );
    }
    match outage.state_change() {
        Some(Some(since)) => writes.push(REKOR_OUTAGE_SINCE.put(&since).map_err(state_failed)?),
        Some(None) => writes.push(REKOR_OUTAGE_SINCE.delete()),
        None => {}
    }
    if rejudged != rejudge {
        writes.push(REJUDGE.put(&rejudged).map_err(state_failed)?);
    }
    let watched: Vec<Unit> = evaluation.active.keys().cloned().collect();
    writes.push(ACTIVE.put(&watched).map_err(state_failed)?);
    for (name, cursor) in &read.cursors {
        writes.push(
            StateKey::named(cursor_key(name))
                .put(cursor)
                .map_err(state_failed)?,
        );
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
    if let Some(evidence) = &evidence {
        summary.push_str(&match evidence.stats.would_write {
            0 => format!("; {} evidence packs written", evidence.stats.written),
            n => format!("; {n} evidence packs would be written (dry run)"),
        });
        if let Some((sha, error)) = evidence.stats.failed.iter().next() {
            summary.push_str(&format!(
                ", {} failed (release {sha}: {error})",
                evidence.stats.failed.len()
            ));
        }
        if evidence.pending.len() > evidence.stats.failed.len() {
            summary.push_str(&format!(
                ", {} wait for the next sweep",
                evidence.pending.len() - evidence.stats.failed.len()
            ));
        }
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
        "evidence": evidence.as_ref().map(|evidence| &evidence.stats),
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
pub(crate) fn overdue_for_rekor(
    rules: &[Rule],
    chains: &Chains,
    now: DateTime<Utc>,
) -> Vec<String> {
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

fn encode_changed(chains: &Chains) -> Result<(Vec<StateWrite>, usize), StateError> {
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
    let parts: Vec<Result<Vec<StateWrite>, StateError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = digests
            .chunks(per_thread)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(digest, chain)| DIGESTS.key(digest).put(chain))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(StateError("encoding digest chains panicked".into())))
            })
            .collect()
    });
    let mut writes = Vec::with_capacity(changed);
    for part in parts {
        writes.extend(part?);
    }
    for (sha, release) in releases {
        writes.push(RELEASES.key(sha).put(release)?);
    }
    Ok((writes, changed))
}

/// A source and where it stopped (for `http`, also what it answered).
enum SourceInput {
    Files(FilesCursor),
    Http(HttpCursor, Result<HttpBody, String>),
    Github(GithubRead),
}

fn read_sources(
    inputs: Vec<(SourceSpec, SourceInput)>,
    max_events: u64,
    bundles: Option<BundleCheck>,
    horizon: Horizon,
) -> Read {
    let mut ingest = Ingest::new(inputs.len(), bundles, horizon);
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
                    Ok(next) => cursors_out.push((name.clone(), SourceCursor::Files(next))),
                    // The lines handed over before the error are correlated
                    // and their cursor stored with them; the rest is read
                    // next sweep. The source still counts as failed.
                    Err(err) => {
                        cursors_out.push((name.clone(), SourceCursor::Files(err.cursor)));
                        failed.insert(name.clone(), format!("{}: {}", path.display(), err.error));
                    }
                }
            }
            (_, SourceInput::Http(cursor, Ok(body))) => {
                let next = read_body(&name, body, cursor, budget, &mut stats, &mut ingest);
                cursors_out.push((name.clone(), SourceCursor::Http(next)));
            }
            (_, SourceInput::Http(_, Err(err))) => {
                failed.insert(name.clone(), err.clone());
            }
            (_, SourceInput::Github(read)) => {
                // Every event of the repositories read; their cursor moves
                // with them, failed repositories keep theirs.
                if !read.lines.is_empty() {
                    ingest.lines(&name, 1, &read.lines);
                }
                stats.lines += memchr::memchr_iter(b'\n', &read.lines).count() as u64;
                stats.skipped = read.skipped.len() as u64;
                stats.skipped_samples = read.skipped.iter().take(SAMPLES).cloned().collect();
                cursors_out.push((name.clone(), SourceCursor::Github(read.cursor.clone())));
                if !read.errors.is_empty() {
                    failed.insert(name.clone(), read.errors.join("; "));
                }
            }
            (_, SourceInput::Files(_)) => {
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
    let bundles_checked = parsed.iter().map(|p| p.bundles_checked).sum();
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
        bundles_checked,
    }
}

/// While kept chains are not all judged under `policy`, adds the next
/// batch of them to `chains` (those already there stay as loaded); the
/// progress to keep.
async fn rejudge_batch(
    state: &JobState,
    rejudge: &Rejudge,
    policy: &str,
    chains: &mut Chains,
) -> Result<Rejudge, JobError> {
    if rejudge.policy == policy {
        return Ok(rejudge.clone());
    }
    let after = match &rejudge.pass {
        Some((pass_policy, after)) if pass_policy == policy => after.clone(),
        _ => None,
    };
    let batch = state
        .load_prefix(&DIGESTS, after.as_deref(), REJUDGE_BATCH)
        .await
        .map_err(state_failed)?;
    let last = batch.last().map(|(digest, _)| digest.clone());
    let done = batch.len() < REJUDGE_BATCH;
    for (digest, chain) in batch {
        chains.digests.entry(digest).or_insert(chain);
    }
    Ok(if done {
        Rejudge {
            policy: policy.to_string(),
            pass: None,
        }
    } else {
        Rejudge {
            policy: rejudge.policy.clone(),
            pass: Some((policy.to_string(), last)),
        }
    })
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
    keys.extend(
        delta
            .unlinked
            .keys()
            .map(|rev| REVS.key(rev).name().to_string()),
    );
    keys.extend(
        delta
            .revs
            .keys()
            .map(|rev| UNLINKED.key(rev).name().to_string()),
    );
    let found = state.get_many(&keys).await.map_err(state_err)?;
    for (key, bytes) in &found {
        insert(&mut chains, key, bytes)?;
    }
    // A runtime verify naming only a rev known from state links to that
    // rev's digest in `absorb`: its stored chain must be here, or it would
    // be written back holding the verify alone.
    let linked: Vec<String> = chains
        .revs
        .iter()
        .filter(|(rev, _)| delta.unlinked.contains_key(*rev))
        .map(|(_, digest)| digest)
        .filter(|digest| !chains.digests.contains_key(*digest))
        .map(|digest| DIGESTS.key(digest).name().to_string())
        .collect();
    for (key, bytes) in &state.get_many(&linked).await.map_err(state_err)? {
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
        let keys: Vec<String> = digests
            .iter()
            .map(|d| DIGESTS.key(d).name().to_string())
            .collect();
        for (key, bytes) in &state.get_many(&keys).await.map_err(state_err)? {
            insert(&mut chains, key, bytes)?;
        }
    }
    Ok(chains)
}

/// Adds the stored entry `key` to `chains`, by its key's family.
fn insert(chains: &mut Chains, key: &str, bytes: &[u8]) -> Result<(), JobError> {
    if let Some(digest) = DIGESTS.suffix(key) {
        let chain = DIGESTS.key(digest).decode(bytes).map_err(state_failed)?;
        chains.digests.insert(digest.to_string(), chain);
    } else if let Some(sha) = RELEASES.suffix(key) {
        let release = RELEASES.key(sha).decode(bytes).map_err(state_failed)?;
        chains.releases.insert(sha.to_string(), release);
    } else if let Some(rev) = REVS.suffix(key) {
        let digest = REVS.key(rev).decode(bytes).map_err(state_failed)?;
        chains.revs.insert(rev.to_string(), digest);
    } else if let Some(rev) = UNLINKED.suffix(key) {
        // Events borrow from the bytes they are read from, then are owned.
        let events: Vec<Event<'_>> = state_key::decode(key, bytes).map_err(state_failed)?;
        let events = events.into_iter().map(Event::into_owned).collect();
        chains.unlinked.insert(rev.to_string(), events);
    }
    Ok(())
}

/// Writing the evidence packs a sweep made due.
struct EvidenceJob<'a> {
    writer: &'a EvidenceWriter,
    verifier: &'a Verifier,
    findings: &'a [Finding],
    now: DateTime<Utc>,
}

struct EvidenceDone {
    stats: EvidenceStats,
    /// Releases still without a current pack: failed, or over the limit.
    pending: Vec<String>,
}

impl EvidenceJob<'_> {
    async fn run(
        &self,
        state: &JobState,
        chains: &Chains,
        fetched: &BTreeMap<String, (String, LogEntry)>,
        pending: &[String],
    ) -> Result<EvidenceDone, JobError> {
        let (due, unnamable): (BTreeSet<String>, BTreeSet<String>) =
            due_releases(chains.releases.iter(), chains.digests.iter(), pending)
                .into_iter()
                .partition(|sha| folder_name(sha).is_some());
        let mut later: Vec<String> = due.iter().skip(MAX_PACKS_PER_SWEEP).cloned().collect();
        let due: Vec<String> = due.into_iter().take(MAX_PACKS_PER_SWEEP).collect();

        // Chains the sweep did not load (a release whose deploy arrived
        // alone, a digest of a release that changed) come from state.
        let mut extra = Chains::default();
        let keys: Vec<String> = due
            .iter()
            .filter(|sha| !chains.releases.contains_key(*sha))
            .map(|sha| RELEASES.key(sha).name().to_string())
            .collect();
        for (key, bytes) in &state.get_many(&keys).await.map_err(state_err)? {
            insert(&mut extra, key, bytes)?;
        }
        let release = |sha: &str| chains.releases.get(sha).or_else(|| extra.releases.get(sha));
        let keys: Vec<String> = due
            .iter()
            .filter_map(|sha| release(sha))
            .flat_map(|release| release.digests.iter())
            .filter(|digest| !chains.digests.contains_key(*digest))
            .map(|digest| DIGESTS.key(digest).name().to_string())
            .collect();
        let mut digests_extra = Chains::default();
        for (key, bytes) in &state.get_many(&keys).await.map_err(state_err)? {
            insert(&mut digests_extra, key, bytes)?;
        }
        let digest = |d: &str| {
            chains
                .digests
                .get(d)
                .or_else(|| digests_extra.digests.get(d))
        };

        let mut entries = fetched.clone();
        let empty = ReleaseChain::default();
        let mut packs = Vec::with_capacity(due.len());
        for sha in &due {
            let release = release(sha).unwrap_or(&empty);
            let digests: BTreeMap<&str, &DigestChain> = release
                .digests
                .iter()
                .filter_map(|d| digest(d).map(|chain| (d.as_str(), chain)))
                .collect();
            for chain in digests.values() {
                for (uuid, _) in chain.checks_of("rekor:") {
                    if !entries.contains_key(uuid) {
                        if let Some(entry) = self.verifier.rekor_entry(uuid).await {
                            entries.insert(uuid.to_string(), entry);
                        }
                    }
                }
            }
            let subjects: BTreeSet<String> = digests
                .keys()
                .map(|d| format!("/{d}"))
                .chain([format!("/{sha}")])
                .collect();
            let findings = self
                .findings
                .iter()
                .filter(|finding| subjects.iter().any(|s| finding.key.ends_with(s.as_str())))
                .collect();
            let input = PackInput {
                sha,
                release,
                digests,
                findings,
                entries: &entries,
            };
            packs.push((sha.clone(), pack_files(&input, self.verifier)));
        }
        let writer = self.writer.clone();
        let now = self.now;
        let stats = tokio::task::spawn_blocking(move || {
            let mut stats = EvidenceStats {
                unnamable: unnamable.into_iter().collect(),
                ..EvidenceStats::default()
            };
            for (sha, files) in packs {
                match writer.write(&sha, &files, now) {
                    // Done before: an earlier attempt of this slot wrote
                    // this very pack.
                    Ok(Performed::Done(()) | Performed::DoneBefore) => stats.written += 1,
                    Ok(Performed::NotPerformed) => stats.would_write += 1,
                    Err(error) => {
                        stats.failed.insert(sha, error);
                    }
                }
            }
            stats
        })
        .await
        .map_err(|err| JobError::Failed(format!("writing evidence packs failed: {err}")))?;
        later.extend(stats.failed.keys().cloned());
        later.sort();
        Ok(EvidenceDone {
            stats,
            pending: later,
        })
    }
}
