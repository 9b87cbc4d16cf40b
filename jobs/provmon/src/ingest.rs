//! Parsing and correlating on every core. The reader hands complete lines
//! over in batches; each worker parses its batches and folds the events
//! into chains of its own; at the end the workers' chains are merged.
//! Cursors stay with the reader, which alone knows what was handed over.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};

use crate::chain::Chains;
use crate::event::{parse_event, Event, Horizon, Stage};
use crate::source::{each_line, LineSink};
use crate::verify::{bundle_id, BundleVerifier};

/// Sigstore bundles on `sign` events are verified by the workers as they
/// parse (in parallel, and without keeping the bundles' text).
#[derive(Clone)]
pub struct BundleCheck {
    pub verifier: Arc<BundleVerifier>,
    pub now: DateTime<Utc>,
}

/// Lines per batch are cut at about this many bytes.
const BATCH_BYTES: usize = 1 << 20;
/// Malformed lines quoted per source.
pub const SAMPLES: usize = 5;

/// What parsing found for one source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseStats {
    pub events: u64,
    pub malformed: u64,
    /// Sigstore bundles verified while parsing.
    pub bundles_checked: u64,
    /// `(file, line, problem)` of the first malformed lines, in file order.
    pub samples: Vec<(String, u64, String)>,
}

struct Batch {
    source: usize,
    file: Arc<str>,
    /// Chunks of complete lines, each with the number of its first line.
    chunks: Vec<(u64, Vec<u8>)>,
    bytes: usize,
    /// Problems found by the reader itself (overlong lines).
    malformed: Vec<(u64, String)>,
}

impl Batch {
    fn new(source: usize, file: Arc<str>) -> Self {
        Self {
            source,
            file,
            chunks: Vec::new(),
            bytes: 0,
            malformed: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.malformed.is_empty()
    }
}

struct Parsed {
    chains: Chains,
    stats: Vec<ParseStats>,
}

/// A pool of parsing workers fed by one reader.
pub struct Ingest {
    sources: usize,
    source: usize,
    batch: Option<Batch>,
    sender: Option<SyncSender<Batch>>,
    workers: Vec<JoinHandle<Parsed>>,
}

impl Ingest {
    /// `sources`: how many sources will be read (stats are kept per source);
    /// events dated beyond `horizon` are malformed.
    pub fn new(sources: usize, bundles: Option<BundleCheck>, horizon: Horizon) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (sender, receiver) = sync_channel::<Batch>(threads * 2);
        let receiver = Arc::new(Mutex::new(receiver));
        let workers = (0..threads)
            .map(|_| {
                let receiver = receiver.clone();
                let bundles = bundles.clone();
                std::thread::spawn(move || work(&receiver, sources, bundles.as_ref(), horizon))
            })
            .collect();
        Self {
            sources,
            source: 0,
            batch: None,
            sender: Some(sender),
            workers,
        }
    }

    /// Lines from now on belong to source number `source`.
    pub fn start_source(&mut self, source: usize) {
        self.flush();
        self.source = source.min(self.sources.saturating_sub(1));
    }

    fn batch_for(&mut self, file: &str) -> &mut Batch {
        let same = self
            .batch
            .as_ref()
            .is_some_and(|batch| &*batch.file == file && batch.source == self.source);
        if !same {
            self.flush();
            self.batch = Some(Batch::new(self.source, Arc::from(file)));
        }
        self.batch.as_mut().expect("set above")
    }

    fn flush(&mut self) {
        if let Some(batch) = self.batch.take().filter(|batch| !batch.is_empty()) {
            if let Some(sender) = &self.sender {
                // A worker that died (panicked) shows up in `finish`.
                let _ = sender.send(batch);
            }
        }
    }

    /// Waits for every line to be parsed; the merged chains and per-source
    /// stats. A worker that died took lines with it: that is an error, so
    /// the caller keeps its cursors and the lines are read again.
    pub fn finish(mut self) -> Result<(Chains, Vec<ParseStats>), String> {
        self.flush();
        self.sender = None;
        let mut chains = Chains::default();
        let mut stats = vec![ParseStats::default(); self.sources];
        for worker in std::mem::take(&mut self.workers) {
            let Ok(parsed) = worker.join() else {
                return Err("a parsing worker died; nothing of this sweep's events is kept".into());
            };
            chains.merge_delta(parsed.chains);
            for (total, part) in stats.iter_mut().zip(parsed.stats) {
                total.events += part.events;
                total.malformed += part.malformed;
                total.bundles_checked += part.bundles_checked;
                total.samples.extend(part.samples);
            }
        }
        for total in &mut stats {
            total.samples.sort();
            total.samples.truncate(SAMPLES);
        }
        Ok((chains, stats))
    }
}

impl LineSink for Ingest {
    fn lines(&mut self, file: &str, first_line: u64, chunk: &[u8]) {
        let batch = self.batch_for(file);
        batch.chunks.push((first_line, chunk.to_vec()));
        batch.bytes += chunk.len();
        if batch.bytes >= BATCH_BYTES {
            self.flush();
        }
    }

    fn malformed(&mut self, file: &str, line_no: u64, problem: String) {
        self.batch_for(file).malformed.push((line_no, problem));
    }
}

fn work(
    receiver: &Mutex<Receiver<Batch>>,
    sources: usize,
    bundles: Option<&BundleCheck>,
    horizon: Horizon,
) -> Parsed {
    let mut parsed = Parsed {
        chains: Chains::default(),
        stats: vec![ParseStats::default(); sources],
    };
    loop {
        let batch = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => break,
        };
        let Ok(batch) = batch else { break };
        let stats = &mut parsed.stats[batch.source];
        let mut note = |line_no: u64, problem: String| {
            stats.malformed += 1;
            // Keep enough per worker that the first few overall survive.
            if stats.samples.len() < SAMPLES {
                stats
                    .samples
                    .push((batch.file.to_string(), line_no, problem));
            }
        };
        for (line_no, problem) in &batch.malformed {
            note(*line_no, problem.clone());
        }
        let mut events = 0;
        let mut bundles_checked = 0;
        for (first, chunk) in &batch.chunks {
            each_line(*first, chunk, |line_no, line| {
                let checked =
                    parse_event(line).and_then(|event| horizon.check(&event).map(|()| event));
                match checked {
                    Ok(event) => {
                        events += 1;
                        parsed.chains.apply(&event);
                        if let Some(check) = bundles {
                            bundles_checked += check_bundle(&mut parsed.chains, &event, check);
                        }
                    }
                    Err(problem) => note(line_no, problem),
                }
            });
        }
        parsed.stats[batch.source].events += events;
        parsed.stats[batch.source].bundles_checked += bundles_checked;
    }
    parsed
}

/// Verifies the Sigstore bundle a `sign` event carries, if any; 1 if one
/// was checked.
fn check_bundle(chains: &mut Chains, event: &Event, bundles: &BundleCheck) -> u64 {
    let (Stage::Sign, Some(bundle), Some(digest)) = (
        event.stage,
        event.sigstore_bundle.as_deref(),
        event.bundle_digest.as_deref(),
    ) else {
        return 0;
    };
    let check = bundles.verifier.check(digest, bundle, bundles.now);
    chains.record_bundle_check(digest, &bundle_id(bundle), check, event.ts);
    1
}
