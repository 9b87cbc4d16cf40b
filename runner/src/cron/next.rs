//! Fire times of a cron expression in a time zone.
//!
//! Wall-clock matches are found in local time, then mapped to instants with
//! Vixie cron's DST rules:
//! - a fixed-time job (no `*` in seconds, minute or hour) fires once per
//!   matching local time: a time inside a spring-forward gap fires at the
//!   first instant after the gap, a time inside a repeated hour fires at its
//!   first occurrence only;
//! - any other job follows real time: it fires at every instant whose local
//!   time matches, so a repeated hour fires twice and a skipped one not at all.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc,
};

use super::parse::CronExpr;

/// No zone moves its clocks by more than this in one transition.
const MAX_SHIFT_SECONDS: i64 = 3 * 3600;
/// How far ahead a wall-clock search may look before giving up.
const SEARCH_YEARS: i32 = 30;

impl CronExpr {
    /// The first fire strictly after `after`, in zone `tz`.
    pub fn next_after<Tz: TimeZone>(&self, after: DateTime<Utc>, tz: &Tz) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(tz);
        let start_wall = local.naive_local() - Duration::seconds(self.lookback_seconds(after, tz));
        let limit_year = local.year() + SEARCH_YEARS;
        let mut wall = start_wall;
        let mut best: Option<DateTime<Utc>> = None;
        loop {
            wall = self.next_wall_after(wall, limit_year)?;
            let mapped = map_wall(wall, tz);
            if let Some(best) = best {
                // Earliest instants grow with wall time: nothing later can win.
                if mapped.earliest() > best {
                    return Some(best);
                }
            }
            for instant in mapped.fires(self.fixed_time) {
                if instant > after && best.is_none_or(|best| instant < best) {
                    best = Some(instant);
                }
            }
        }
    }

    /// Fires in `(after, until]`, oldest first, at most `limit` of them.
    pub fn fires_between<Tz: TimeZone>(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        tz: &Tz,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut fires = Vec::new();
        let mut cursor = after;
        while fires.len() < limit {
            match self.next_after(cursor, tz) {
                Some(next) if next <= until => {
                    fires.push(next);
                    cursor = next;
                }
                _ => break,
            }
        }
        fires
    }

    /// Only when clocks go back within the next hours can a wall time
    /// earlier than now's still lie ahead in real time.
    fn lookback_seconds<Tz: TimeZone>(&self, after: DateTime<Utc>, tz: &Tz) -> i64 {
        let offset_now = offset_seconds(after, tz);
        let offset_later = offset_seconds(after + Duration::seconds(MAX_SHIFT_SECONDS), tz);
        (offset_now - offset_later).max(0)
    }

    /// The first local time strictly after `after` matching every field.
    pub(super) fn next_wall_after(
        &self,
        after: NaiveDateTime,
        limit_year: i32,
    ) -> Option<NaiveDateTime> {
        let mut t = after.with_nanosecond(0)? + Duration::seconds(1);
        loop {
            if t.year() > limit_year {
                return None;
            }
            let date = t.date();
            if !self.months.contains(t.month()) {
                t = first_of_next_month(date)?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !self.day_matches(date) {
                t = date.succ_opt()?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            let Some(hour) = self.hours.next_from(t.hour()) else {
                t = date.succ_opt()?.and_hms_opt(0, 0, 0)?;
                continue;
            };
            if hour != t.hour() {
                t = date.and_hms_opt(hour, 0, 0)?;
            }
            let Some(minute) = self.minutes.next_from(t.minute()) else {
                t = date.and_hms_opt(hour, 0, 0)? + Duration::hours(1);
                continue;
            };
            if minute != t.minute() {
                t = date.and_hms_opt(hour, minute, 0)?;
            }
            let Some(second) = self.seconds.next_from(t.second()) else {
                t = date.and_hms_opt(hour, minute, 0)? + Duration::minutes(1);
                continue;
            };
            return date.and_hms_opt(hour, minute, second);
        }
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = self.days_of_month.contains(date.day());
        let dow = self
            .days_of_week
            .contains(date.weekday().num_days_from_sunday());
        // Vixie: if either day field starts with `*`, both must match;
        // if both are restricted, either may match.
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

/// How one local wall time maps onto real instants.
#[derive(Clone, Copy)]
enum Mapped {
    Single(DateTime<Utc>),
    /// Clocks went back: the wall time happened twice.
    Repeated(DateTime<Utc>, DateTime<Utc>),
    /// Clocks went forward over it; the instant the gap ended.
    Skipped(DateTime<Utc>),
}

impl Mapped {
    fn earliest(&self) -> DateTime<Utc> {
        match *self {
            Mapped::Single(at) | Mapped::Repeated(at, _) | Mapped::Skipped(at) => at,
        }
    }

    fn fires(&self, fixed_time: bool) -> Vec<DateTime<Utc>> {
        match (*self, fixed_time) {
            (Mapped::Single(at), _) => vec![at],
            (Mapped::Repeated(first, _), true) => vec![first],
            (Mapped::Repeated(first, second), false) => vec![first, second],
            (Mapped::Skipped(gap_end), true) => vec![gap_end],
            (Mapped::Skipped(_), false) => Vec::new(),
        }
    }
}

fn map_wall<Tz: TimeZone>(wall: NaiveDateTime, tz: &Tz) -> Mapped {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(at) => Mapped::Single(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, second) => {
            let (first, second) = (first.with_timezone(&Utc), second.with_timezone(&Utc));
            Mapped::Repeated(first.min(second), first.max(second))
        }
        LocalResult::None => Mapped::Skipped(gap_end(wall, tz)),
    }
}

/// The first instant whose local time is at or after `wall`, for a `wall`
/// inside a spring-forward gap: the moment the clocks jumped.
fn gap_end<Tz: TimeZone>(wall: NaiveDateTime, tz: &Tz) -> DateTime<Utc> {
    let as_utc = wall.and_utc();
    let mut low = as_utc - Duration::hours(15);
    let mut high = as_utc + Duration::hours(15);
    while high - low > Duration::seconds(1) {
        let mid = low + (high - low) / 2;
        if mid.with_timezone(tz).naive_local() >= wall {
            high = mid;
        } else {
            low = mid;
        }
    }
    high.with_nanosecond(0).unwrap_or(high)
}

fn offset_seconds<Tz: TimeZone>(at: DateTime<Utc>, tz: &Tz) -> i64 {
    let local = at.with_timezone(tz).naive_local();
    (local - at.naive_utc()).num_seconds()
}

fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    if date.month() == 12 {
        NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
    }
}
