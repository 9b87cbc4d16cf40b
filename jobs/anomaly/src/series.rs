//! From a rule's aggregate table to what the detector judges: one series of
//! points per group (rate and ratio rules), or the region changes of each
//! subject (travel).

use patrol_anomaly_detect::Point;
use polars::prelude::*;

use crate::aggregate::{key_columns, Aggregate};
use crate::rules::{Measure, Rule};

/// One group's series: `points[i]` covers `[ts, ts + window)`.
#[derive(Debug, Clone)]
pub struct GroupSeries {
    /// `(field, value)` in the rule's `group_by` order.
    pub labels: Vec<(&'static str, String)>,
    pub points: Vec<Point>,
    /// A trace id seen in each point's bucket (for ratios: of a numerator event).
    pub traces: Vec<Option<String>>,
}

impl GroupSeries {
    /// `tenant=acme,region=eu` (or `all` for an ungrouped rule).
    pub fn label_text(&self) -> String {
        if self.labels.is_empty() {
            return "all".into();
        }
        self.labels
            .iter()
            .map(|(field, value)| format!("{field}={value}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The buckets a run judges: from the first bucket at or after `from` to
/// the last one that ended by `newest` (a bucket still filling is left for
/// the next run). Times in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: i64,
    pub newest: i64,
}

/// One series per group. Rate series have every bucket of the range (0
/// where nothing happened); ratio series only buckets with at least the
/// rule's `min_total` events.
pub fn group_series(
    rule: &Rule,
    aggregate: &Aggregate,
    range: Range,
) -> PolarsResult<Vec<GroupSeries>> {
    let width = rule.window.as_millis() as i64;
    let first_bucket = range.from.div_euclid(width) * width;
    let end_bucket = (range.newest + 1).div_euclid(width) * width; // exclusive
    let mut keys: Vec<&str> = key_columns(rule);
    keys.pop(); // bucket
    let mut sort_by: Vec<PlSmallStr> = keys.iter().map(|k| (*k).into()).collect();
    sort_by.push("bucket".into());
    let table = aggregate
        .table
        .sort(sort_by, SortMultipleOptions::default())?;
    let label_columns: Vec<&StringChunked> = keys
        .iter()
        .map(|k| table.column(k).and_then(|c| c.str()))
        .collect::<PolarsResult<_>>()?;
    let buckets = table.column("bucket")?.i64()?;
    let n = table.column("n")?.u64()?;
    let k = match rule.measure {
        Measure::Ratio { .. } => Some(table.column("k")?.u64()?),
        _ => None,
    };
    let min_total = match rule.measure {
        Measure::Ratio { min_total, .. } => min_total,
        _ => 0,
    };
    let traces = table.column("trace")?.str()?;
    let mut out: Vec<GroupSeries> = Vec::new();
    let mut current: Option<Vec<String>> = None;
    let mut next_bucket = first_bucket;
    for row in 0..table.height() {
        let labels: Vec<String> = label_columns
            .iter()
            .map(|c| c.get(row).unwrap_or_default().to_string())
            .collect();
        if current.as_ref() != Some(&labels) {
            if let Some(series) = out.last_mut() {
                if k.is_none() {
                    fill_zeros(series, next_bucket, end_bucket, width);
                }
            }
            out.push(GroupSeries {
                labels: keys.iter().copied().zip(labels.iter().cloned()).collect(),
                points: Vec::new(),
                traces: Vec::new(),
            });
            current = Some(labels);
            next_bucket = first_bucket;
        }
        let Some(bucket) = buckets.get(row) else {
            continue;
        };
        if bucket < first_bucket || bucket >= end_bucket {
            continue;
        }
        let series = out.last_mut().expect("a series was pushed for this group");
        let count = n.get(row).unwrap_or(0);
        match k {
            None => {
                fill_zeros(series, next_bucket, bucket, width);
                series.points.push(Point {
                    ts: bucket / 1000,
                    value: count as f64,
                    weight: count as f64,
                });
            }
            Some(k) if count >= min_total.max(1) => {
                let hits = k.get(row).unwrap_or(0);
                series.points.push(Point {
                    ts: bucket / 1000,
                    value: hits as f64 / count as f64,
                    weight: count as f64,
                });
            }
            Some(_) => {
                next_bucket = bucket + width;
                continue;
            }
        }
        series.traces.push(traces.get(row).map(str::to_string));
        next_bucket = bucket + width;
    }
    if let (Some(series), None) = (out.last_mut(), k) {
        fill_zeros(series, next_bucket, end_bucket, width);
    }
    out.retain(|series| !series.points.is_empty());
    Ok(out)
}

fn fill_zeros(series: &mut GroupSeries, from: i64, to: i64, width: i64) {
    let mut bucket = from;
    while bucket < to {
        series.points.push(Point {
            ts: bucket / 1000,
            value: 0.0,
            weight: 0.0,
        });
        series.traces.push(None);
        bucket += width;
    }
}

/// Hops of one subject closer together than this are one episode.
const HOP_EPISODE_MS: i64 = 3600 * 1000;

/// One subject seen in two regions too close together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub subject: String,
    pub from_region: String,
    pub to_region: String,
    /// Last time in `from_region` and first in `to_region` (ms).
    pub left_at: i64,
    pub arrived_at: i64,
    pub trace: Option<String>,
}

/// The hops worth a page: the first of each subject's hour-long episode
/// (a hijacked session bounces between regions many times), from `from`.
pub fn travel_hops(aggregate: &Aggregate, from: i64) -> Vec<Hop> {
    let mut hops: Vec<&Hop> = aggregate
        .hops
        .iter()
        .filter(|h| h.arrived_at >= from)
        .collect();
    hops.sort_by(|a, b| (&a.subject, a.arrived_at).cmp(&(&b.subject, b.arrived_at)));
    let mut out: Vec<Hop> = Vec::new();
    let mut episode: Option<(&str, i64)> = None;
    for hop in hops {
        let continues = episode.is_some_and(|(subject, start)| {
            subject == hop.subject && hop.arrived_at - start < HOP_EPISODE_MS
        });
        if !continues {
            episode = Some((hop.subject.as_str(), hop.arrived_at));
            out.push(hop.clone());
        }
    }
    out.sort_by_key(|h| h.arrived_at);
    out
}
