use std::fmt;

use chrono::NaiveDate;

use super::fields::FieldSet;

/// A parsed, validated cron expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CronExpr {
    pub(super) source: String,
    pub(super) seconds: FieldSet,
    pub(super) minutes: FieldSet,
    pub(super) hours: FieldSet,
    pub(super) days_of_month: FieldSet,
    pub(super) months: FieldSet,
    pub(super) days_of_week: FieldSet,
    /// Day-of-month field starts with `*` (Vixie: then days are ANDed).
    pub(super) dom_star: bool,
    pub(super) dow_star: bool,
    /// No `*` at the start of the seconds, minute or hour field: a job at a
    /// fixed time of day, which gets Vixie's DST compensation.
    pub(super) fixed_time: bool,
}

/// Why an expression was rejected; names the field and the accepted values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CronError {
    pub message: String,
}

impl CronError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: FieldSpec = FieldSpec {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
// 7 is accepted as Sunday and folded to 0.
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

const MAX_SOURCE_LEN: usize = 1024;

impl CronExpr {
    /// Parses and validates; an expression that can never fire is an error.
    pub fn parse(source: &str) -> Result<Self, CronError> {
        if source.len() > MAX_SOURCE_LEN {
            return Err(CronError::new(format!(
                "expression is longer than {MAX_SOURCE_LEN} characters"
            )));
        }
        let trimmed = source.trim();
        let expanded = expand_macro(trimmed)?;
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (second_field, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            0 => return Err(CronError::new("expression is empty")),
            n => {
                return Err(CronError::new(format!(
                "expected 5 fields (min hour dom month dow) or 6 with leading seconds, found {n}"
            )))
            }
        };
        let seconds = parse_field(second_field, &SECOND)?;
        let minutes = parse_field(rest[0], &MINUTE)?;
        let hours = parse_field(rest[1], &HOUR)?;
        let days_of_month = parse_field(rest[2], &DAY_OF_MONTH)?;
        let months = parse_field(rest[3], &MONTH)?;
        let mut days_of_week = parse_field(rest[4], &DAY_OF_WEEK)?;
        if days_of_week.contains(7) {
            days_of_week.insert(0);
        }
        let starts_wild = |field: &str| field.starts_with('*') || field.starts_with('?');
        let expr = Self {
            source: trimmed.to_string(),
            seconds,
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            dom_star: starts_wild(rest[2]),
            dow_star: starts_wild(rest[4]),
            fixed_time: !(starts_wild(second_field)
                || starts_wild(rest[0])
                || starts_wild(rest[1])),
        };
        expr.ensure_can_fire()?;
        Ok(expr)
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the job runs at fixed times of day (no `*` in seconds,
    /// minute or hour), which decides its DST behaviour.
    pub fn is_fixed_time(&self) -> bool {
        self.fixed_time
    }

    fn ensure_can_fire(&self) -> Result<(), CronError> {
        // 2000-01-01 starts a window with leap days and every weekday/date
        // combination; an expression silent for 28 years never fires.
        let start = NaiveDate::from_ymd_opt(2000, 1, 1)
            .and_then(|date| date.and_hms_opt(0, 0, 0))
            .expect("valid constant date");
        match self.next_wall_after(start, 2028) {
            Some(_) => Ok(()),
            None => Err(CronError::new(
                "expression never fires (no date matches day-of-month, month and day-of-week together)",
            )),
        }
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn expand_macro(text: &str) -> Result<&str, CronError> {
    if !text.starts_with('@') {
        return Ok(text);
    }
    match text.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => Ok("0 0 1 1 *"),
        "@monthly" => Ok("0 0 1 * *"),
        "@weekly" => Ok("0 0 * * 0"),
        "@daily" | "@midnight" => Ok("0 0 * * *"),
        "@hourly" => Ok("0 * * * *"),
        _ => Err(CronError::new(format!(
            "unknown macro `{text}`; accepted: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"
        ))),
    }
}

fn parse_field(text: &str, spec: &FieldSpec) -> Result<FieldSet, CronError> {
    let mut set = FieldSet::empty();
    for part in text.split(',') {
        parse_part(part, spec, &mut set).map_err(|message| {
            CronError::new(format!(
                "{} field `{text}`: {message} (accepted: {}-{}{}, *, a-b, */n, a-b/n, lists with ,)",
                spec.name,
                spec.min,
                spec.max,
                if spec.names.is_empty() {
                    String::new()
                } else {
                    format!(" or {}-{}", spec.names[0], spec.names[spec.names.len() - 1])
                }
            ))
        })?;
    }
    Ok(set)
}

fn parse_part(part: &str, spec: &FieldSpec, set: &mut FieldSet) -> Result<(), String> {
    if part.is_empty() {
        return Err("empty list item".into());
    }
    let (range, step) = match part.split_once('/') {
        Some((range, step)) => {
            let step: u32 = step
                .parse()
                .map_err(|_| format!("step `{step}` is not a number"))?;
            if step == 0 || step > spec.max {
                return Err(format!("step {step} is out of range 1-{}", spec.max));
            }
            (range, Some(step))
        }
        None => (part, None),
    };
    let (low, high) = if range == "*" || (range == "?" && spec.name.starts_with("day")) {
        (
            spec.min,
            if spec.name == "day-of-week" {
                6
            } else {
                spec.max
            },
        )
    } else if let Some((low, high)) = range.split_once('-') {
        (parse_value(low, spec)?, parse_value(high, spec)?)
    } else {
        let value = parse_value(range, spec)?;
        // `5/15` means from 5 to the end in steps of 15.
        (value, if step.is_some() { spec.max } else { value })
    };
    if low > high {
        return Err(format!("range {low}-{high} runs backwards"));
    }
    let step = step.unwrap_or(1);
    let mut value = low;
    while value <= high {
        set.insert(value);
        value += step;
    }
    Ok(())
}

fn parse_value(text: &str, spec: &FieldSpec) -> Result<u32, String> {
    if let Some(index) = spec
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
    {
        // Month names start at 1, weekday names at 0 (SUN).
        return Ok(index as u32 + spec.min);
    }
    let value: u32 = text.parse().map_err(|_| {
        if text.contains(['L', 'W', '#']) {
            format!("`{text}`: L, W and # are not supported")
        } else {
            format!("`{text}` is not a number")
        }
    })?;
    if value < spec.min || value > spec.max {
        return Err(format!("{value} is out of range {}-{}", spec.min, spec.max));
    }
    Ok(value)
}
