//! Folding event batches into what the rules measure: per rule, group and
//! time bucket a count (rate) or a count and a numerator (ratio), reduced
//! by polars as each batch arrives and merged at the end (the partial
//! tables are small next to the events); and for travel rules the region
//! changes themselves, found by walking each batch in time order with the
//! last place of every subject carried from batch to batch (memory grows
//! with subjects, not events).

use std::collections::HashMap;

use polars::prelude::*;

use crate::input::BatchSink;
use crate::rules::{Field, Filter, Measure, Pattern, Rule};
use crate::series::Hop;

/// Partial tables kept per rule before they are merged into one.
const MERGE_EVERY: usize = 16;

/// What one rule's measurement came to.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// Columns: the rule's `group_by` fields, `bucket` (ms), then
    /// rate: `n`, `trace`; ratio: `n`, `k`, `trace`. Empty for travel.
    pub table: DataFrame,
    /// Travel rules: every region change faster than `within`.
    pub hops: Vec<Hop>,
}

/// Where a subject was last seen (travel rules).
#[derive(Debug, Clone)]
struct Seen {
    ts: i64,
    region: String,
}

/// Collects batches into one [`Aggregate`] per rule.
pub struct Aggregator {
    rules: Vec<Rule>,
    partials: Vec<Vec<DataFrame>>,
    /// Per rule (travel rules only): last place per subject, hops found.
    last_seen: Vec<HashMap<String, Seen>>,
    hops: Vec<Vec<Hop>>,
    /// Earliest and latest event time seen (ms).
    pub span: Option<(i64, i64)>,
    pub events: u64,
}

impl Aggregator {
    pub fn new(rules: Vec<Rule>) -> Self {
        let partials = rules.iter().map(|_| Vec::new()).collect();
        let last_seen = rules.iter().map(|_| HashMap::new()).collect();
        let hops = rules.iter().map(|_| Vec::new()).collect();
        Self {
            rules,
            partials,
            last_seen,
            hops,
            span: None,
            events: 0,
        }
    }

    /// The merged table per rule, in rule order.
    pub fn finish(mut self) -> Result<Vec<Aggregate>, String> {
        let mut out = Vec::with_capacity(self.rules.len());
        for index in 0..self.rules.len() {
            self.merge(index)?;
            let table = match self.partials[index].pop() {
                Some(table) => table,
                None => empty_table(&self.rules[index])?,
            };
            let hops = std::mem::take(&mut self.hops[index]);
            out.push(Aggregate { table, hops });
        }
        Ok(out)
    }

    fn merge(&mut self, index: usize) -> Result<(), String> {
        let parts = std::mem::take(&mut self.partials[index]);
        if parts.len() <= 1 {
            self.partials[index] = parts;
            return Ok(());
        }
        let rule = &self.rules[index];
        let lazy: Vec<LazyFrame> = parts.into_iter().map(DataFrame::lazy).collect();
        let merged = concat(lazy, UnionArgs::default())
            .and_then(|all| merge_partials(rule, all).collect())
            .map_err(|err| format!("rule {}: {err}", rule.id))?;
        self.partials[index].push(merged);
        Ok(())
    }
}

impl BatchSink for Aggregator {
    fn batch(&mut self, frame: DataFrame) -> Result<(), String> {
        let ts = frame
            .column("ts")
            .and_then(|c| c.i64().cloned())
            .map_err(|err| err.to_string())?;
        if let (Some(min), Some(max)) = (ts.min(), ts.max()) {
            self.span = Some(match self.span {
                Some((lo, hi)) => (lo.min(min), hi.max(max)),
                None => (min, max),
            });
        }
        self.events += frame.height() as u64;
        for index in 0..self.rules.len() {
            let rule = &self.rules[index];
            if let Measure::Travel { within } = rule.measure {
                let moves =
                    travel_moves(rule, &frame).map_err(|err| format!("rule {}: {err}", rule.id))?;
                let within = within.as_millis() as i64;
                find_hops(
                    moves,
                    within,
                    &mut self.last_seen[index],
                    &mut self.hops[index],
                )
                .map_err(|err| format!("rule {}: {err}", rule.id))?;
                continue;
            }
            let partial = reduce_batch(rule, frame.clone().lazy())
                .collect()
                .map_err(|err| format!("rule {}: {err}", rule.id))?;
            self.partials[index].push(partial);
            if self.partials[index].len() >= MERGE_EVERY {
                self.merge(index)?;
            }
        }
        Ok(())
    }
}

/// The keys of a rule's table, bucket last.
pub fn key_columns(rule: &Rule) -> Vec<&'static str> {
    match rule.measure {
        Measure::Travel { .. } => Vec::new(),
        _ => rule
            .group_by
            .iter()
            .map(|field| field.column())
            .chain(["bucket"])
            .collect(),
    }
}

fn bucket_ms(rule: &Rule) -> i64 {
    let width = match rule.measure {
        Measure::Travel { within } => within,
        _ => rule.window,
    };
    (width.as_millis() as i64).max(1)
}

fn reduce_batch(rule: &Rule, events: LazyFrame) -> LazyFrame {
    let width = lit(bucket_ms(rule));
    let keys: Vec<Expr> = key_columns(rule).into_iter().map(col).collect();
    let events = events
        .filter(filter_expr(&rule.filter))
        // Times before 1970 are not audit events; `%` truncates toward 0.
        .with_column((col("ts") - col("ts") % width).alias("bucket"));
    match &rule.measure {
        Measure::Rate => events.group_by(keys).agg([
            len().cast(DataType::UInt64).alias("n"),
            first_trace(col("trace_id")),
        ]),
        Measure::Ratio { numerator, .. } => {
            let hit = filter_expr(numerator);
            events.group_by(keys).agg([
                len().cast(DataType::UInt64).alias("n"),
                hit.clone().cast(DataType::UInt64).sum().alias("k"),
                first_trace(col("trace_id").filter(hit)),
            ])
        }
        Measure::Travel { .. } => events,
    }
}

fn merge_partials(rule: &Rule, parts: LazyFrame) -> LazyFrame {
    let keys: Vec<Expr> = key_columns(rule).into_iter().map(col).collect();
    match rule.measure {
        Measure::Rate => parts
            .group_by(keys)
            .agg([col("n").sum(), first_trace(col("trace"))]),
        Measure::Ratio { .. } => {
            parts
                .group_by(keys)
                .agg([col("n").sum(), col("k").sum(), first_trace(col("trace"))])
        }
        Measure::Travel { .. } => parts,
    }
}

/// A batch's events of a travel rule, in time order: `ts`, `subject`,
/// `region`, `trace_id`.
fn travel_moves(rule: &Rule, frame: &DataFrame) -> PolarsResult<DataFrame> {
    frame
        .clone()
        .lazy()
        .filter(filter_expr(&rule.filter))
        .select([col("ts"), col("subject"), col("region"), col("trace_id")])
        .sort(
            ["ts"],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .collect()
}

/// Walks time-ordered events: a subject whose region differs from where it
/// was last seen less than `within` ago has hopped.
fn find_hops(
    moves: DataFrame,
    within: i64,
    last_seen: &mut HashMap<String, Seen>,
    hops: &mut Vec<Hop>,
) -> PolarsResult<()> {
    let ts = moves.column("ts")?.i64()?;
    let subjects = moves.column("subject")?.str()?;
    let regions = moves.column("region")?.str()?;
    let traces = moves.column("trace_id")?.str()?;
    for row in 0..moves.height() {
        let (Some(at), Some(subject), Some(region)) =
            (ts.get(row), subjects.get(row), regions.get(row))
        else {
            continue;
        };
        match last_seen.get_mut(subject) {
            Some(seen) => {
                if seen.region != region && (at - seen.ts).abs() < within {
                    hops.push(Hop {
                        subject: subject.to_string(),
                        from_region: seen.region.clone(),
                        to_region: region.to_string(),
                        left_at: seen.ts,
                        arrived_at: at,
                        trace: traces.get(row).map(str::to_string),
                    });
                }
                if at >= seen.ts {
                    seen.ts = at;
                    if seen.region != region {
                        seen.region = region.to_string();
                    }
                }
            }
            None => {
                last_seen.insert(
                    subject.to_string(),
                    Seen {
                        ts: at,
                        region: region.to_string(),
                    },
                );
            }
        }
    }
    Ok(())
}

fn first_trace(trace: Expr) -> Expr {
    trace.drop_nulls().first().alias("trace")
}

fn empty_table(rule: &Rule) -> Result<DataFrame, String> {
    let mut columns: Vec<Column> = key_columns(rule)
        .into_iter()
        .map(|name| match name {
            "bucket" => Column::new(name.into(), Vec::<i64>::new()),
            _ => Column::new(name.into(), Vec::<String>::new()),
        })
        .collect();
    let numbers: &[&str] = match rule.measure {
        Measure::Rate => &["n"],
        Measure::Ratio { .. } => &["n", "k"],
        Measure::Travel { .. } => &[],
    };
    for name in numbers {
        columns.push(Column::new((*name).into(), Vec::<u64>::new()));
    }
    columns.push(Column::new("trace".into(), Vec::<Option<String>>::new()));
    DataFrame::new_infer_height(columns).map_err(|err| err.to_string())
}

/// All of a filter's terms; within a term, any of its patterns.
pub fn filter_expr(filter: &Filter) -> Expr {
    filter
        .terms
        .iter()
        .map(|(field, patterns)| {
            patterns
                .iter()
                .map(|pattern| pattern_expr(*field, pattern))
                .reduce(Expr::or)
                .unwrap_or_else(|| lit(false))
        })
        .reduce(Expr::and)
        .unwrap_or_else(|| lit(true))
}

fn pattern_expr(field: Field, pattern: &Pattern) -> Expr {
    let column = col(field.column());
    match pattern {
        Pattern::Exact(value) => column.eq(lit(value.as_str())),
        Pattern::Prefix(prefix) => column.str().starts_with(lit(prefix.as_str())),
        Pattern::Suffix(suffix) => column.str().ends_with(lit(suffix.as_str())),
        // `*`: the field is present (a step-up happened at all).
        Pattern::Any => column.is_not_null(),
    }
}
