//! Chains: what is known about each bundle digest and each release, built
//! up event by event. A digest can belong to several releases and a
//! release can have several bundles; each link is kept, none overwritten.

use std::collections::{BTreeMap, BTreeSet};

// foldhash: fast, and unlike FxHash it spreads keys that differ only in a
// few hex digits (digests, shas), which otherwise collide into long memcmp
// chains.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::compact::{Links, Stages};
use crate::event::{Event, Stage};
use crate::verify::Check;

/// What happened at one stage of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageLog {
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub first: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub last: DateTime<Utc>,
    pub count: u64,
    /// Status and detail of the latest event (by `ts`) of this stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl StageLog {
    fn new(event: &Event) -> Self {
        Self {
            first: event.ts,
            last: event.ts,
            count: 1,
            status: event.status.as_deref().map(str::to_string),
            detail: event.detail.as_deref().map(str::to_string),
        }
    }

    fn add(&mut self, event: &Event) {
        self.count += 1;
        self.first = self.first.min(event.ts);
        if event.ts >= self.last {
            self.last = event.ts;
            self.status = event.status.as_deref().map(str::to_string);
            self.detail = event.detail.as_deref().map(str::to_string);
        }
    }
}

/// Most identifiers of one kind kept per chain; beyond it they are counted.
const MAX_LINKS: usize = 64;

/// Everything known about one bundle digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestChain {
    pub releases: Links,
    pub stages: Stages,
    #[serde(default, skip_serializing_if = "Links::is_empty")]
    pub rekor_uuids: Links,
    #[serde(default, skip_serializing_if = "Links::is_empty")]
    pub deploy_revs: Links,
    /// Signatures seen on `sign` events (base64), for verification.
    #[serde(default, skip_serializing_if = "Links::is_empty")]
    pub signatures: Links,
    /// Sigstore bundles seen on `sign` events, by the SHA-256 of their text
    /// (the text itself is verified as it is read, not kept).
    #[serde(default, skip_serializing_if = "Links::is_empty")]
    pub bundles: Links,
    /// Links not kept because a set was full.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_links: u64,
    /// Results of verifying signatures (`sig:<base64>`), Sigstore bundles
    /// (`bundle:<sha256 of its text>`) and Rekor entries (`rekor:<uuid>`),
    /// each checked once.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, Check>,
    /// Changed since loaded: to be written back.
    #[serde(skip)]
    pub changed: bool,
    /// Something could not be checked this sweep (Rekor down): watch it.
    #[serde(skip)]
    pub unverifiable: bool,
}

/// Everything known about one release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseChain {
    pub digests: Links,
    pub stages: Stages,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_links: u64,
    #[serde(skip)]
    pub changed: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn log_stage(stages: &mut Stages, event: &Event) {
    stages.upsert(event.stage, || StageLog::new(event), |log| log.add(event));
}

fn link(set: &mut Links, value: &str, dropped: &mut u64) {
    if set.contains(value) {
        return;
    }
    if set.len() >= MAX_LINKS {
        *dropped += 1;
    } else {
        set.insert(value);
    }
}

/// The value at `key`, created if missing; allocates the key only then
/// (most events land on a chain that exists).
fn entry<'a, T: Default>(map: &'a mut HashMap<String, T>, key: &str) -> &'a mut T {
    if !map.contains_key(key) {
        map.insert(key.to_string(), T::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// Moves `from` into `into`, merging entries both have. An empty `into`
/// (a first sweep) just takes `from` whole.
fn merge_maps<T>(into: &mut HashMap<String, T>, from: HashMap<String, T>, merge: fn(&mut T, &T)) {
    if into.is_empty() {
        *into = from;
        return;
    }
    for (key, value) in from {
        match into.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut mine) => merge(mine.get_mut(), &value),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(value);
            }
        }
    }
}

/// A unit rules are evaluated on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Unit {
    Digest(String),
    Release(String),
}

/// The chains a sweep works on: those loaded from state plus those its
/// events create. Tracks what changed, to write back only that.
#[derive(Debug, Default)]
pub struct Chains {
    pub digests: HashMap<String, DigestChain>,
    pub releases: HashMap<String, ReleaseChain>,
    /// deploy_rev → digest, for runtime verifies that name only the rev.
    pub revs: HashMap<String, String>,
    /// Runtime verifies whose rev is not linked to a digest yet, by rev.
    pub unlinked: HashMap<String, Vec<Event<'static>>>,
    pub dirty_revs: BTreeSet<String>,
    pub dirty_unlinked: BTreeSet<String>,
}

impl Chains {
    /// Adds one event. Returns false if it could not be linked yet (a
    /// runtime verify naming an unknown deploy_rev; kept for later).
    pub fn apply(&mut self, event: &Event) -> bool {
        match event.stage {
            Stage::Release => {
                let sha = event.release_sha.as_deref().unwrap_or_default();
                self.release_event(sha, event);
                true
            }
            Stage::RuntimeVerify if event.bundle_digest.is_none() => {
                let rev = event.deploy_rev.as_deref().unwrap_or_default();
                match self.revs.get(rev).cloned() {
                    Some(digest) => {
                        self.digest_event(&digest, event);
                        true
                    }
                    None => {
                        self.unlinked
                            .entry(rev.to_string())
                            .or_default()
                            .push(event.clone().into_owned());
                        self.dirty_unlinked.insert(rev.to_string());
                        false
                    }
                }
            }
            _ => {
                let digest = event.bundle_digest.as_deref().unwrap_or_default();
                self.digest_event(digest, event);
                if let Some(sha) = event.release_sha.as_deref() {
                    // A bundle (or any stage) naming its release links both ways.
                    let release = entry(&mut self.releases, sha);
                    release.changed = true;
                    link(&mut release.digests, digest, &mut release.dropped_links);
                    if event.stage == Stage::Bundle {
                        log_stage(&mut release.stages, event);
                    }
                }
                if let (Stage::Deploy, Some(rev)) = (event.stage, event.deploy_rev.as_deref()) {
                    if self.revs.get(rev).map(String::as_str) != Some(digest) {
                        self.revs.insert(rev.to_string(), digest.to_string());
                        self.dirty_revs.insert(rev.to_string());
                    }
                    if let Some(waiting) = self.unlinked.remove(rev) {
                        self.dirty_unlinked.insert(rev.to_string());
                        for verify in waiting {
                            self.digest_event(digest, &verify);
                        }
                    }
                }
                true
            }
        }
    }

    fn release_event(&mut self, sha: &str, event: &Event) {
        let release = entry(&mut self.releases, sha);
        release.changed = true;
        log_stage(&mut release.stages, event);
    }

    fn digest_event(&mut self, digest: &str, event: &Event) {
        let chain = entry(&mut self.digests, digest);
        chain.changed = true;
        log_stage(&mut chain.stages, event);
        let dropped = &mut chain.dropped_links;
        if let Some(sha) = event.release_sha.as_deref() {
            link(&mut chain.releases, sha, dropped);
        }
        if let Some(uuid) = event.rekor_uuid.as_deref() {
            link(&mut chain.rekor_uuids, uuid, dropped);
        }
        if let Some(rev) = event.deploy_rev.as_deref() {
            link(&mut chain.deploy_revs, rev, dropped);
        }
        if let (Stage::Sign, Some(signature)) = (event.stage, event.signature.as_deref()) {
            link(&mut chain.signatures, signature, dropped);
        }
        if let (Stage::Sign, Some(bundle)) = (event.stage, event.sigstore_bundle.as_deref()) {
            link(
                &mut chain.bundles,
                &crate::verify::bundle_id(bundle),
                dropped,
            );
        }
    }

    /// Records the verdict on a Sigstore bundle of `digest` (seen at `ts`).
    /// A verified bundle carries a verified transparency-log entry, so it
    /// also counts as the Rekor stage.
    pub fn record_bundle_check(
        &mut self,
        digest: &str,
        bundle_id: &str,
        check: Check,
        ts: DateTime<Utc>,
    ) {
        let chain = entry(&mut self.digests, digest);
        chain.changed = true;
        if check.ok {
            let logged = StageLog {
                first: ts,
                last: ts,
                count: 1,
                status: Some("in a verified sigstore bundle".into()),
                detail: None,
            };
            // Rekor events of its own, if any, keep their status.
            chain.stages.upsert(Stage::Rekor, || logged, |_| {});
        }
        // The first verdict stands, unless another policy gave it: the
        // bundle's text is here again, so this policy's verdict replaces it.
        let key = crate::verify::bundle_key(bundle_id);
        match chain.checks.get(&key) {
            Some(kept) if kept.policy == check.policy && !kept.rejudge_needed() => {}
            _ => {
                chain.checks.insert(key, check);
            }
        }
    }

    /// Every chain present, as units (for a delta: every chain its events
    /// touched).
    pub fn touched(&self) -> Vec<Unit> {
        self.digests
            .keys()
            .map(|digest| Unit::Digest(digest.clone()))
            .chain(self.releases.keys().map(|sha| Unit::Release(sha.clone())))
            .collect()
    }
}

impl StageLog {
    fn merge(&mut self, other: &StageLog) {
        self.count += other.count;
        self.first = self.first.min(other.first);
        if other.last >= self.last {
            self.last = other.last;
            self.status = other.status.clone();
            self.detail = other.detail.clone();
        }
    }
}

fn merge_stages(into: &mut Stages, from: &Stages) {
    for (stage, log) in from.iter() {
        into.upsert(stage, || log.clone(), |mine| mine.merge(log));
    }
}

fn merge_links(into: &mut Links, from: &Links, dropped: &mut u64) {
    for value in from.iter() {
        link(into, value, dropped);
    }
}

impl DigestChain {
    pub fn merge(&mut self, other: &DigestChain) {
        self.changed = true;
        merge_stages(&mut self.stages, &other.stages);
        let dropped = &mut self.dropped_links;
        merge_links(&mut self.releases, &other.releases, dropped);
        merge_links(&mut self.rekor_uuids, &other.rekor_uuids, dropped);
        merge_links(&mut self.deploy_revs, &other.deploy_revs, dropped);
        merge_links(&mut self.signatures, &other.signatures, dropped);
        merge_links(&mut self.bundles, &other.bundles, dropped);
        for (key, check) in &other.checks {
            self.checks
                .entry(key.clone())
                .or_insert_with(|| check.clone());
        }
        self.dropped_links += other.dropped_links;
    }
}

impl ReleaseChain {
    pub fn merge(&mut self, other: &ReleaseChain) {
        self.changed = true;
        merge_stages(&mut self.stages, &other.stages);
        merge_links(&mut self.digests, &other.digests, &mut self.dropped_links);
        self.dropped_links += other.dropped_links;
    }
}

impl Chains {
    /// Folds another delta (a parsing worker's) into this one: the
    /// smaller into the bigger, then as [`Chains::absorb`]. A verify one
    /// worker could not link may name a rev another saw deployed.
    pub fn merge_delta(&mut self, other: Chains) {
        if other.digests.len() + other.releases.len() > self.digests.len() + self.releases.len() {
            let smaller = std::mem::replace(self, other);
            self.absorb(smaller);
        } else {
            self.absorb(other);
        }
    }

    /// Folds a sweep's new chains (`delta`, built from new events only)
    /// into the chains loaded from state. Runtime verifies that only named
    /// a rev are linked now if the rev is known from either side.
    pub fn absorb(&mut self, delta: Chains) {
        merge_maps(&mut self.digests, delta.digests, DigestChain::merge);
        merge_maps(&mut self.releases, delta.releases, ReleaseChain::merge);
        for (rev, digest) in delta.revs {
            if self.revs.get(&rev) != Some(&digest) {
                self.revs.insert(rev.clone(), digest);
                self.dirty_revs.insert(rev);
            }
        }
        self.dirty_unlinked.extend(delta.dirty_unlinked);
        for (rev, events) in delta.unlinked {
            self.unlinked.entry(rev).or_default().extend(events);
        }
        let linkable: Vec<String> = self
            .unlinked
            .keys()
            .filter(|rev| self.revs.contains_key(*rev))
            .cloned()
            .collect();
        for rev in linkable {
            let digest = self.revs[&rev].clone();
            for event in self.unlinked.remove(&rev).unwrap_or_default() {
                self.digest_event(&digest, &event);
            }
            self.dirty_unlinked.insert(rev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event;

    fn event(json: &str) -> Event<'_> {
        parse_event(json.as_bytes()).unwrap()
    }

    #[test]
    fn a_digest_under_two_releases_and_a_release_with_two_bundles_keep_every_link() {
        let mut chains = Chains::default();
        for line in [
            r#"{"type":"release","ts":"2026-11-20T10:00:00Z","release_sha":"r1"}"#,
            r#"{"type":"bundle","ts":"2026-11-20T10:01:00Z","release_sha":"r1","bundle_digest":"d1"}"#,
            r#"{"type":"bundle","ts":"2026-11-20T10:02:00Z","release_sha":"r1","bundle_digest":"d2"}"#,
            r#"{"type":"bundle","ts":"2026-11-20T11:00:00Z","release_sha":"r2","bundle_digest":"d1"}"#,
        ] {
            assert!(chains.apply(&event(line)));
        }
        let r1 = &chains.releases["r1"];
        assert_eq!(r1.digests.iter().collect::<Vec<_>>(), ["d1", "d2"]);
        assert_eq!(r1.stages.get(&Stage::Bundle).unwrap().count, 2);
        assert_eq!(
            chains.digests["d1"].releases.iter().collect::<Vec<_>>(),
            ["r1", "r2"]
        );
    }

    #[test]
    fn a_runtime_verify_naming_only_its_rev_waits_for_the_deploy() {
        let mut chains = Chains::default();
        let verify = event(
            r#"{"type":"runtime_verify","ts":"2026-11-20T10:06:00Z","deploy_rev":"v7","status":"fail"}"#,
        );
        assert!(!chains.apply(&verify));
        assert!(chains.digests.is_empty());
        let deploy = event(
            r#"{"type":"deploy","ts":"2026-11-20T10:05:00Z","bundle_digest":"d1","deploy_rev":"v7"}"#,
        );
        assert!(chains.apply(&deploy));
        let log = chains.digests["d1"]
            .stages
            .get(&Stage::RuntimeVerify)
            .unwrap();
        assert_eq!(log.status.as_deref(), Some("fail"));
        assert!(chains.unlinked.is_empty());
        assert_eq!(chains.revs["v7"], "d1");
    }

    #[test]
    fn the_latest_event_by_time_sets_a_stage_status_whatever_the_arrival_order() {
        let mut chains = Chains::default();
        chains.apply(&event(r#"{"type":"runtime_verify","ts":"2026-11-20T10:10:00Z","bundle_digest":"d1","status":"pass"}"#));
        chains.apply(&event(r#"{"type":"runtime_verify","ts":"2026-11-20T10:05:00Z","bundle_digest":"d1","status":"fail"}"#));
        let log = chains.digests["d1"]
            .stages
            .get(&Stage::RuntimeVerify)
            .unwrap();
        assert_eq!((log.status.as_deref(), log.count), (Some("pass"), 2));
    }
}
