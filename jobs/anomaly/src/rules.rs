//! Anomaly rules (`policies/anomaly/rules.yaml`), the seed's format grown
//! to say how each rule is measured and judged:
//!
//! ```yaml
//! rules:
//!   - id: export-spike
//!     description: Exports per tenant and region far above their baseline
//!     kind: rate                      # rate | ratio | travel
//!     match: { action: "export.*" }   # which events count
//!     group_by: [tenant, region]
//!     window: 10m                     # bucket size
//!     threshold: { kind: adaptive, z: 4, alpha: 0.2 }   # what pages
//!     compare: { kind: static, multiple: 3, baseline: 7d }  # the backtest's reference
//!     min_count: 5
//!     severity: high
//!     runbook: anomaly-export
//! ```
//!
//! Every problem is reported at once as `file:line:col: field: message`.

use std::path::Path;
use std::time::Duration;

use patrol_anomaly_detect::{AdaptiveParams, Direction, Method, Noise, Season};
use patrol_job_api::rule_list::parse_rule_list;
use patrol_job_api::units::HumanDuration;
use patrol_job_api::Severity;
use serde::Deserialize;

/// An event field rules can filter and group on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Subject,
    Action,
    Decision,
    Region,
    Tenant,
    StepUp,
}

impl Field {
    pub const ALL: [Field; 6] = [
        Field::Subject,
        Field::Action,
        Field::Decision,
        Field::Region,
        Field::Tenant,
        Field::StepUp,
    ];

    /// The column name in the event data.
    pub fn column(self) -> &'static str {
        match self {
            Field::Subject => "subject",
            Field::Action => "action",
            Field::Decision => "decision",
            Field::Region => "region",
            Field::Tenant => "tenant",
            Field::StepUp => "step_up",
        }
    }
}

/// `field: pattern` filters, all of which must hold. A pattern is a value,
/// a glob with `*` (`export.*`), or a list of either (any may match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub terms: Vec<(Field, Vec<Pattern>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Any,
}

impl Pattern {
    fn parse(text: &str) -> Result<Self, String> {
        match text.matches('*').count() {
            0 => Ok(Pattern::Exact(text.to_string())),
            1 if text == "*" => Ok(Pattern::Any),
            1 if text.ends_with('*') => Ok(Pattern::Prefix(text[..text.len() - 1].to_string())),
            1 if text.starts_with('*') => Ok(Pattern::Suffix(text[1..].to_string())),
            _ => Err(format!(
                "`{text}`: a pattern is a value or has one `*` at its start or end (`export.*`)"
            )),
        }
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(exact) => value == exact,
            Pattern::Prefix(prefix) => value.starts_with(prefix.as_str()),
            Pattern::Suffix(suffix) => value.ends_with(suffix.as_str()),
            Pattern::Any => true,
        }
    }
}

/// What a rule measures per group and window.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// Events matching the rule's filter per window.
    Rate,
    /// Of the events matching the filter, the share also matching
    /// `numerator`; windows with fewer than `min_total` events are not judged.
    Ratio { numerator: Filter, min_total: u64 },
    /// One subject seen in two regions less than `within` apart.
    Travel { within: Duration },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub measure: Measure,
    pub filter: Filter,
    pub group_by: Vec<Field>,
    /// Bucket size (travel: unused, the window is `within`).
    pub window: Duration,
    /// What pages.
    pub threshold: Method,
    /// The reference a backtest compares `threshold` with.
    pub compare: Method,
    pub direction: Direction,
    /// Tune an adaptive threshold on labelled history (`backtest`).
    pub tune: bool,
    /// Auto-tune refuses parameters detecting fewer incidents than this.
    pub min_power: f64,
    /// Fewest events in a bucket (ratio rules: numerator events) that may
    /// alarm upward, whatever the method.
    pub min_count: f64,
    /// How long after the data starts nothing is judged (a baseline needs
    /// a week to have seen every hour of the week once).
    pub warm_up: Duration,
    pub severity: Severity,
    pub runbook: Option<String>,
    /// Most episodes of the rule (all groups) that page per UTC day; past
    /// it one summary page says how many were held back.
    pub pages_per_day: u32,
}

impl Rule {
    pub fn is_adaptive(&self) -> bool {
        matches!(self.threshold, Method::Adaptive(_))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    description: String,
    kind: RawKind,
    #[serde(default, rename = "match")]
    filter: Option<serde_norway::Mapping>,
    #[serde(default)]
    numerator: Option<serde_norway::Mapping>,
    #[serde(default)]
    min_total: Option<u64>,
    #[serde(default)]
    group_by: Vec<Field>,
    #[serde(default)]
    window: Option<HumanDuration>,
    #[serde(default)]
    within: Option<HumanDuration>,
    #[serde(default)]
    threshold: Option<RawThreshold>,
    #[serde(default)]
    compare: Option<RawThreshold>,
    #[serde(default)]
    direction: Option<RawDirection>,
    #[serde(default)]
    min_count: Option<f64>,
    #[serde(default)]
    min_power: Option<f64>,
    #[serde(default)]
    warm_up: Option<HumanDuration>,
    #[serde(default)]
    pages_per_day: Option<u32>,
    severity: String,
    #[serde(default)]
    runbook: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawKind {
    Rate,
    Ratio,
    Travel,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawDirection {
    Up,
    Down,
    Both,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawSeason {
    HourOfWeek,
    HourOfDay,
    None,
}

/// `{kind: adaptive, …}`, `{kind: static, multiple, baseline}` or
/// `{kind: p95, multiple, baseline}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawThreshold {
    Adaptive {
        #[serde(default)]
        alpha: Option<f64>,
        #[serde(default)]
        z: Option<f64>,
        #[serde(default)]
        season: Option<RawSeason>,
        #[serde(default)]
        min_samples: Option<usize>,
        /// Tune alpha and z on labelled history (default true).
        #[serde(default)]
        tune: Option<bool>,
    },
    Static {
        multiple: f64,
        #[serde(default)]
        baseline: Option<HumanDuration>,
    },
    P95 {
        multiple: f64,
        #[serde(default)]
        baseline: Option<HumanDuration>,
    },
}

const DEFAULT_BASELINE: Duration = Duration::from_secs(7 * 24 * 3600);
/// A rule covers many groups (tenants × regions × actions): its budget is
/// wider than a single series' (3).
const DEFAULT_PAGES_PER_DAY: u32 = 10;
const DEFAULT_WARM_UP: Duration = Duration::from_secs(7 * 24 * 3600);

/// Reads and checks a rules file.
pub fn load_rules(path: &Path) -> Result<Vec<Rule>, Vec<String>> {
    let source = std::fs::read_to_string(path)
        .map_err(|err| vec![format!("{}: cannot read: {err}", path.display())])?;
    parse_rules(path, &source)
}

pub fn parse_rules(path: &Path, source: &str) -> Result<Vec<Rule>, Vec<String>> {
    parse_rule_list(
        path,
        source,
        "no rules: a detector that checks nothing",
        check_rule,
        |rule: &Rule| &rule.id,
    )
}

use patrol_job_api::rule_list::FieldProblems as Problems;

fn check_rule(raw: RawRule, prefix: &str) -> Result<Rule, Problems> {
    let mut problems = Vec::new();
    let field = |name: &str| format!("{prefix}.{name}");
    patrol_job_api::rule_list::check_id_and_runbook(
        &raw.id,
        raw.runbook.as_deref(),
        prefix,
        &mut problems,
    );
    let filter = parse_filter(raw.filter.as_ref(), &field("match"), &mut problems);
    let numerator = parse_filter(raw.numerator.as_ref(), &field("numerator"), &mut problems);
    let severity = Severity::parse_with_seed_names(&raw.severity)
        .map_err(|message| problems.push((field("severity"), message)))
        .ok();
    let min_power = raw.min_power.unwrap_or(0.8);
    if !(0.0..=1.0).contains(&min_power) {
        problems.push((
            field("min_power"),
            format!("{min_power} is not a share of incidents (0 to 1)"),
        ));
    }
    let pages_per_day = raw.pages_per_day.unwrap_or(DEFAULT_PAGES_PER_DAY);
    if pages_per_day == 0 {
        problems.push((
            field("pages_per_day"),
            "must be at least 1 (held-back anomalies page as one summary)".into(),
        ));
    }
    let min_count = raw.min_count.unwrap_or(0.0);
    if !min_count.is_finite() || min_count < 0.0 {
        problems.push((field("min_count"), "must be a number ≥ 0".into()));
    }
    let mut unused = |name: &str, present: bool, why: &str| {
        if present {
            problems.push((field(name), format!("`{name}` {why}")));
        }
    };
    let measure = match raw.kind {
        RawKind::Rate => {
            unused(
                "numerator",
                raw.numerator.is_some(),
                "goes with `kind: ratio`",
            );
            unused(
                "min_total",
                raw.min_total.is_some(),
                "goes with `kind: ratio`",
            );
            unused("within", raw.within.is_some(), "goes with `kind: travel`");
            Some(Measure::Rate)
        }
        RawKind::Ratio => {
            unused("within", raw.within.is_some(), "goes with `kind: travel`");
            match numerator {
                Some(numerator) if !numerator.terms.is_empty() => Some(Measure::Ratio {
                    numerator,
                    min_total: raw.min_total.unwrap_or(20),
                }),
                _ => {
                    problems.push((
                        field("numerator"),
                        "a ratio rule needs `numerator` (e.g. `{decision: deny}`)".into(),
                    ));
                    None
                }
            }
        }
        RawKind::Travel => {
            for (name, present) in [
                ("numerator", raw.numerator.is_some()),
                ("min_total", raw.min_total.is_some()),
                ("window", raw.window.is_some()),
                ("threshold", raw.threshold.is_some()),
                ("compare", raw.compare.is_some()),
                ("direction", raw.direction.is_some()),
                ("warm_up", raw.warm_up.is_some()),
            ] {
                unused(
                    name,
                    present,
                    "has no meaning for `kind: travel` (it uses `within`)",
                );
            }
            match raw.within {
                Some(within) if !within.0.is_zero() => Some(Measure::Travel { within: within.0 }),
                _ => {
                    problems.push((
                        field("within"),
                        "a travel rule needs `within` longer than 0 (e.g. 5m)".into(),
                    ));
                    None
                }
            }
        }
    };
    let is_travel = matches!(measure, Some(Measure::Travel { .. }));
    let window = match (raw.window, is_travel) {
        (_, true) => Duration::ZERO,
        (Some(window), false) if window.0.as_secs() >= 60 && window.0.as_secs() % 60 == 0 => {
            window.0
        }
        (Some(window), false) => {
            problems.push((
                field("window"),
                format!("`{window}` must be whole minutes, at least 1m"),
            ));
            Duration::ZERO
        }
        (None, false) => {
            problems.push((field("window"), "missing: the bucket size, e.g. 10m".into()));
            Duration::ZERO
        }
    };
    let noise = match measure {
        Some(Measure::Ratio { .. }) => Noise::Binomial,
        _ => Noise::Poisson,
    };
    let default_adaptive = RawThreshold::Adaptive {
        alpha: None,
        z: None,
        season: None,
        min_samples: None,
        tune: None,
    };
    let (threshold, tune) = threshold_method(
        raw.threshold.as_ref().unwrap_or(&default_adaptive),
        noise,
        min_count,
        &field("threshold"),
        &mut problems,
    );
    let default_compare = RawThreshold::Static {
        multiple: 3.0,
        baseline: None,
    };
    let (compare, _) = threshold_method(
        raw.compare.as_ref().unwrap_or(&default_compare),
        noise,
        min_count,
        &field("compare"),
        &mut problems,
    );
    let direction = match raw.direction.unwrap_or(RawDirection::Up) {
        RawDirection::Up => Direction::Up,
        RawDirection::Down => Direction::Down,
        RawDirection::Both => Direction::Both,
    };
    match (measure, severity) {
        (Some(measure), Some(severity)) if problems.is_empty() => Ok(Rule {
            id: raw.id,
            description: raw.description,
            measure,
            filter: filter.unwrap_or_default(),
            group_by: raw.group_by,
            window,
            threshold,
            compare,
            direction,
            tune,
            min_power,
            min_count,
            warm_up: raw.warm_up.map_or(DEFAULT_WARM_UP, |w| w.0),
            severity,
            runbook: raw.runbook,
            pages_per_day,
        }),
        _ => Err(problems),
    }
}

fn threshold_method(
    raw: &RawThreshold,
    noise: Noise,
    min_count: f64,
    field: &str,
    problems: &mut Problems,
) -> (Method, bool) {
    let mut bad = |name: &str, message: String| problems.push((format!("{field}.{name}"), message));
    let baseline_secs = |baseline: &Option<HumanDuration>, bad: &mut dyn FnMut(&str, String)| {
        let baseline = baseline.map_or(DEFAULT_BASELINE, |b| b.0);
        if baseline.as_secs() < 3600 {
            bad("baseline", "the baseline window must be at least 1h".into());
        }
        baseline.as_secs() as i64
    };
    let check_multiple = |multiple: f64, bad: &mut dyn FnMut(&str, String)| {
        if !(multiple.is_finite() && multiple > 1.0) {
            bad("multiple", format!("{multiple} must be a number above 1"));
        }
    };
    match raw {
        RawThreshold::Adaptive {
            alpha,
            z,
            season,
            min_samples,
            tune,
        } => {
            let defaults = AdaptiveParams::default();
            let alpha = alpha.unwrap_or(defaults.alpha);
            if !(alpha > 0.0 && alpha <= 1.0) {
                bad("alpha", format!("{alpha} must be in (0, 1]"));
            }
            let z = z.unwrap_or(defaults.z);
            if !(z.is_finite() && z > 0.0) {
                bad("z", format!("{z} must be a number above 0"));
            }
            let season = match season.unwrap_or(RawSeason::HourOfWeek) {
                RawSeason::HourOfWeek => Season::HourOfWeek,
                RawSeason::HourOfDay => Season::HourOfDay,
                RawSeason::None => Season::None,
            };
            let params = AdaptiveParams {
                alpha,
                z,
                season,
                noise,
                min_samples: min_samples.unwrap_or(defaults.min_samples),
                // Ratio values are shares; their floor is on numerator
                // events, applied with every method (`evaluate`).
                min_value: if noise == Noise::Binomial {
                    0.0
                } else {
                    min_count
                },
                ..defaults
            };
            (Method::Adaptive(params), tune.unwrap_or(true))
        }
        RawThreshold::Static { multiple, baseline } => {
            check_multiple(*multiple, &mut bad);
            let window_secs = baseline_secs(baseline, &mut bad);
            (
                Method::MeanMultiple {
                    multiple: *multiple,
                    window_secs,
                },
                false,
            )
        }
        RawThreshold::P95 { multiple, baseline } => {
            check_multiple(*multiple, &mut bad);
            let window_secs = baseline_secs(baseline, &mut bad);
            (
                Method::P95Multiple {
                    multiple: *multiple,
                    window_secs,
                },
                false,
            )
        }
    }
}

fn parse_filter(
    mapping: Option<&serde_norway::Mapping>,
    field: &str,
    problems: &mut Problems,
) -> Option<Filter> {
    let mapping = mapping?;
    let mut filter = Filter::default();
    for (key, value) in mapping {
        let Some(name) = key.as_str() else {
            problems.push((field.to_string(), "keys must be event field names".into()));
            continue;
        };
        let Some(event_field) = Field::ALL.into_iter().find(|f| f.column() == name) else {
            problems.push((
                format!("{field}.{name}"),
                format!(
                    "unknown event field `{name}` (known: {})",
                    Field::ALL.map(Field::column).join(", ")
                ),
            ));
            continue;
        };
        let texts: Vec<&str> = match value {
            serde_norway::Value::String(text) => vec![text.as_str()],
            serde_norway::Value::Sequence(items) => {
                items.iter().filter_map(|i| i.as_str()).collect()
            }
            _ => Vec::new(),
        };
        let expected = match value {
            serde_norway::Value::Sequence(items) => items.len(),
            _ => 1,
        };
        if texts.is_empty() || texts.len() != expected {
            problems.push((
                format!("{field}.{name}"),
                "expected a string pattern or a list of them".into(),
            ));
            continue;
        }
        let mut patterns = Vec::new();
        for text in texts {
            match Pattern::parse(text) {
                Ok(pattern) => patterns.push(pattern),
                Err(message) => problems.push((format!("{field}.{name}"), message)),
            }
        }
        filter.terms.push((event_field, patterns));
    }
    Some(filter)
}
