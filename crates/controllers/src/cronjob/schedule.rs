//! Cron schedules as upstream's CronJob controller reads them (robfig/cron v3, `ParseStandard`):
//! five fields (minute, hour, day of month, month, day of week) with `*`, `?`, ranges, lists,
//! steps (`*/n`, `a-b/n`, `a/n` = `a-max/n`), month and weekday names (case-insensitive), the
//! descriptors `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`,
//! and an optional `TZ=<zone>` / `CRON_TZ=<zone>` prefix. `@every` is not supported.
//!
//! [`Schedule::next`] reproduces robfig's `SpecSchedule.Next` step by step, including its
//! daylight-saving behaviour: hours and minutes advance in absolute time, so a wall-clock time
//! skipped by a spring-forward transition does not fire that day, and one repeated by a
//! fall-back transition fires twice.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan, Zoned};

/// Set in a field's bits when it was written as `*` or `?` (robfig's `starBit`); it decides
/// whether day-of-month and day-of-week combine with AND (either is a star) or OR.
const STAR: u64 = 1 << 63;

/// A parsed cron schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// From a `TZ=`/`CRON_TZ=` prefix; otherwise the caller's zone applies.
    location: Option<TimeZone>,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DAYS_OF_MONTH: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DAYS_OF_WEEK: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

impl Schedule {
    /// Parses a schedule the way upstream's `cron.ParseStandard` does; the error text follows
    /// robfig's messages.
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err("empty spec string".into());
        }
        let mut location = None;
        let mut rest = spec;
        if let Some(stripped) = spec
            .strip_prefix("TZ=")
            .or_else(|| spec.strip_prefix("CRON_TZ="))
        {
            let (zone, after) = stripped
                .split_once(char::is_whitespace)
                .unwrap_or((stripped, ""));
            location = Some(
                TimeZone::get(zone).map_err(|e| format!("provided bad location {zone}: {e}"))?,
            );
            rest = after.trim();
        }
        if let Some(descriptor) = rest.strip_prefix('@') {
            let mut schedule = Self::descriptor(descriptor)
                .ok_or_else(|| format!("unrecognized descriptor: {rest}"))?;
            schedule.location = location;
            return Ok(schedule);
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {rest}",
                fields.len()
            ));
        }
        Ok(Schedule {
            minute: field(fields[0], &MINUTES)?,
            hour: field(fields[1], &HOURS)?,
            dom: field(fields[2], &DAYS_OF_MONTH)?,
            month: field(fields[3], &MONTHS)?,
            dow: field(fields[4], &DAYS_OF_WEEK)?,
            location,
        })
    }

    fn descriptor(name: &str) -> Option<Schedule> {
        let all = |b: &Bounds| bits(b.min, b.max, 1) | STAR;
        let (minute, hour, dom, month, dow) = match name {
            "yearly" | "annually" => (1, 1, 1 << 1, 1 << 1, all(&DAYS_OF_WEEK)),
            "monthly" => (1, 1, 1 << 1, all(&MONTHS), all(&DAYS_OF_WEEK)),
            "weekly" => (1, 1, all(&DAYS_OF_MONTH), all(&MONTHS), 1),
            "daily" | "midnight" => (1, 1, all(&DAYS_OF_MONTH), all(&MONTHS), all(&DAYS_OF_WEEK)),
            "hourly" => (
                1,
                all(&HOURS),
                all(&DAYS_OF_MONTH),
                all(&MONTHS),
                all(&DAYS_OF_WEEK),
            ),
            _ => return None,
        };
        Some(Schedule {
            minute,
            hour,
            dom,
            month,
            dow,
            location: None,
        })
    }

    /// The zone this schedule is evaluated in: its `TZ=` prefix, else `default`.
    pub fn zone<'a>(&'a self, default: &'a TimeZone) -> &'a TimeZone {
        self.location.as_ref().unwrap_or(default)
    }

    /// The first activation strictly after `after` (at a whole second), evaluated in
    /// `self.zone(tz)`; None when there is none within five years (e.g. `0 0 30 2 *`).
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let tz = self.zone(tz);
        let start = Timestamp::from_second(after.as_second().checked_add(1)?).ok()?;
        let mut t = start.to_zoned(tz.clone());
        let mut added = false;
        let year_limit = t.year() + 5;
        'wrap: loop {
            if t.year() > year_limit {
                return None;
            }
            while !has(self.month, t.month()) {
                if !added {
                    added = true;
                    t = wall_clock(tz, t.year(), t.month(), 1, 0, 0, 0)?;
                }
                // Go's AddDate(0, 1, 0) from the first of the month.
                let date = Date::new(t.year(), t.month(), 1)
                    .ok()?
                    .checked_add(1.month())
                    .ok()?;
                t = wall_clock(
                    tz,
                    date.year(),
                    date.month(),
                    date.day(),
                    t.hour(),
                    t.minute(),
                    t.second(),
                )?;
                if t.month() == 1 {
                    continue 'wrap;
                }
            }
            while !self.day_matches(&t) {
                if !added {
                    added = true;
                    t = wall_clock(tz, t.year(), t.month(), t.day(), 0, 0, 0)?;
                }
                let date = t.date().tomorrow().ok()?;
                t = wall_clock(
                    tz,
                    date.year(),
                    date.month(),
                    date.day(),
                    t.hour(),
                    t.minute(),
                    t.second(),
                )?;
                // Midnight may not exist (DST at midnight): land back on the day's start.
                let hour = i64::from(t.hour());
                if hour != 0 {
                    let shift = if hour > 12 { 24 - hour } else { -hour };
                    t = t.checked_add(SignedDuration::from_hours(shift)).ok()?;
                }
                if t.day() == 1 {
                    continue 'wrap;
                }
            }
            while !has(self.hour, t.hour()) {
                if !added {
                    added = true;
                    t = wall_clock(tz, t.year(), t.month(), t.day(), t.hour(), 0, 0)?;
                }
                t = t.checked_add(SignedDuration::from_hours(1)).ok()?;
                if t.hour() == 0 {
                    continue 'wrap;
                }
            }
            while !has(self.minute, t.minute()) {
                if !added {
                    added = true;
                    t = truncate(&t, 60)?;
                }
                t = t.checked_add(SignedDuration::from_mins(1)).ok()?;
                if t.minute() == 0 {
                    continue 'wrap;
                }
            }
            // The standard parser fixes seconds at 0.
            if t.second() != 0 {
                added = true;
                t = truncate(&t, 60)?
                    .checked_add(SignedDuration::from_mins(1))
                    .ok()?;
                continue 'wrap;
            }
            return Some(t.timestamp());
        }
    }

    fn day_matches(&self, t: &Zoned) -> bool {
        let dom = has(self.dom, t.day());
        let dow = has(self.dow, t.weekday().to_sunday_zero_offset());
        if self.dom & STAR != 0 || self.dow & STAR != 0 {
            dom && dow
        } else {
            dom || dow
        }
    }
}

fn has(bits: u64, value: i8) -> bool {
    (0..63).contains(&value) && bits & (1 << value) != 0
}

fn bits(min: u32, max: u32, step: u32) -> u64 {
    let mut out = 0;
    let mut i = min;
    while i <= max {
        out |= 1 << i;
        i = i.saturating_add(step);
    }
    out
}

/// One field: comma-separated ranges (robfig's `getField` / `getRange`).
fn field(text: &str, bounds: &Bounds) -> Result<u64, String> {
    let mut out = 0;
    for expr in text.split(',') {
        out |= range(expr, bounds)?;
    }
    Ok(out)
}

fn range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end, mut extra);
    if low_and_high[0] == "*" || low_and_high[0] == "?" {
        start = b.min;
        end = b.max;
        extra = STAR;
    } else {
        start = int_or_name(low_and_high[0], b)?;
        end = match low_and_high.len() {
            1 => start,
            2 => int_or_name(low_and_high[1], b)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        extra = 0;
    }
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = number(range_and_step[1])?;
            // "N/step" means "N-max/step".
            if single {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(bits(start, end, step) | extra)
}

fn int_or_name(text: &str, b: &Bounds) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some((_, v)) = b.names.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    number(text)
}

fn number(text: &str) -> Result<u32, String> {
    let n: i64 = text
        .parse()
        .map_err(|_| format!("failed to parse int from {text}"))?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {text}"));
    }
    u32::try_from(n).map_err(|_| format!("value ({n}) out of range: {text}"))
}

/// Go's `time.Date(y, m, d, h, min, s, 0, loc)`: a wall-clock time in a gap or a fold resolves
/// with the offset in effect after the transition (Go's lookup), which is jiff's `earlier`.
fn wall_clock(tz: &TimeZone, y: i16, m: i8, d: i8, h: i8, min: i8, s: i8) -> Option<Zoned> {
    let dt = DateTime::new(y, m, d, h, min, s, 0).ok()?;
    tz.to_ambiguous_zoned(dt).earlier().ok()
}

/// Go's `Truncate` on absolute time.
fn truncate(t: &Zoned, seconds: i64) -> Option<Zoned> {
    let s = t.timestamp().as_second();
    Timestamp::from_second(s - s.rem_euclid(seconds))
        .ok()
        .map(|ts| ts.to_zoned(t.time_zone().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn utc() -> TimeZone {
        TimeZone::UTC
    }

    fn next_utc(spec: &str, after: &str) -> String {
        Schedule::parse(spec)
            .unwrap()
            .next(ts(after), &utc())
            .map(|t| t.to_string())
            .unwrap_or_else(|| "none".into())
    }

    fn next_in(spec: &str, zone: &str, after: &str) -> String {
        let tz = TimeZone::get(zone).unwrap();
        Schedule::parse(spec)
            .unwrap()
            .next(ts(after), &tz)
            .map(|t| t.to_zoned(tz.clone()).to_string())
            .unwrap_or_else(|| "none".into())
    }

    #[test]
    fn every_minute_and_steps() {
        assert_eq!(
            next_utc("*/1 * * * *", "2024-05-01T10:00:00Z"),
            "2024-05-01T10:01:00Z"
        );
        assert_eq!(
            next_utc("* * * * *", "2024-05-01T10:00:30.5Z"),
            "2024-05-01T10:01:00Z"
        );
        assert_eq!(
            next_utc("*/15 * * * *", "2024-05-01T10:14:59Z"),
            "2024-05-01T10:15:00Z"
        );
        assert_eq!(
            next_utc("*/15 * * * *", "2024-05-01T10:45:00Z"),
            "2024-05-01T11:00:00Z"
        );
        assert_eq!(
            next_utc("5/20 * * * *", "2024-05-01T10:26:00Z"),
            "2024-05-01T10:45:00Z"
        );
        assert_eq!(
            next_utc("10-20/5 * * * *", "2024-05-01T10:21:00Z"),
            "2024-05-01T11:10:00Z"
        );
    }

    #[test]
    fn lists_ranges_and_names() {
        assert_eq!(
            next_utc("0 9-17 * * MON-fri", "2024-05-03T17:00:00Z"),
            "2024-05-06T09:00:00Z" // Friday 17:00 -> Monday 09:00
        );
        assert_eq!(
            next_utc("30 6,18 * * *", "2024-05-01T06:30:00Z"),
            "2024-05-01T18:30:00Z"
        );
        assert_eq!(
            next_utc("0 0 1 JAN,jul *", "2024-02-10T00:00:00Z"),
            "2024-07-01T00:00:00Z"
        );
        assert_eq!(
            next_utc("0 0 * * sun", "2024-05-01T00:00:00Z"),
            "2024-05-05T00:00:00Z"
        );
        assert_eq!(
            next_utc("0 12 ? * 3", "2024-05-01T12:00:00Z"),
            "2024-05-08T12:00:00Z"
        );
    }

    #[test]
    fn day_of_month_and_week_combine_with_or_unless_a_star() {
        // Both restricted: the 13th OR a Friday.
        assert_eq!(
            next_utc("0 0 13 * 5", "2024-05-01T00:00:00Z"),
            "2024-05-03T00:00:00Z"
        );
        assert_eq!(
            next_utc("0 0 13 * 5", "2024-05-10T00:00:00Z"),
            "2024-05-13T00:00:00Z"
        );
        // A star in day-of-week: only the day of month counts.
        assert_eq!(
            next_utc("0 0 13 * *", "2024-05-01T00:00:00Z"),
            "2024-05-13T00:00:00Z"
        );
        // */1 is a star too (step 1 keeps the star bit), */2 is not.
        assert_eq!(
            next_utc("0 0 13 * */1", "2024-05-01T00:00:00Z"),
            "2024-05-13T00:00:00Z"
        );
        assert_eq!(
            next_utc("0 0 13 * */2", "2024-05-01T00:00:00Z"),
            "2024-05-02T00:00:00Z" // Thursday (4) matches */2
        );
    }

    #[test]
    fn descriptors() {
        assert_eq!(
            next_utc("@hourly", "2024-05-01T10:00:00Z"),
            "2024-05-01T11:00:00Z"
        );
        assert_eq!(
            next_utc("@daily", "2024-05-01T10:00:00Z"),
            "2024-05-02T00:00:00Z"
        );
        assert_eq!(
            next_utc("@midnight", "2024-05-01T00:00:00Z"),
            "2024-05-02T00:00:00Z"
        );
        assert_eq!(
            next_utc("@weekly", "2024-05-01T10:00:00Z"),
            "2024-05-05T00:00:00Z"
        );
        assert_eq!(
            next_utc("@monthly", "2024-05-01T10:00:00Z"),
            "2024-06-01T00:00:00Z"
        );
        assert_eq!(
            next_utc("@yearly", "2024-05-01T10:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next_utc("@annually", "2024-12-31T23:59:59Z"),
            "2025-01-01T00:00:00Z"
        );
    }

    #[test]
    fn month_and_year_wraps_and_leap_days() {
        assert_eq!(
            next_utc("0 0 29 2 *", "2024-03-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            next_utc("59 23 31 12 *", "2024-12-31T23:59:00Z"),
            "2025-12-31T23:59:00Z"
        );
        assert_eq!(
            next_utc("0 0 31 * *", "2024-04-01T00:00:00Z"),
            "2024-05-31T00:00:00Z" // April has no 31st
        );
        // Never: February 30th.
        assert_eq!(next_utc("0 0 30 2 *", "2024-01-01T00:00:00Z"), "none");
    }

    #[test]
    fn time_zones() {
        // 09:00 in Tokyo is 00:00 UTC.
        assert_eq!(
            next_in("0 9 * * *", "Asia/Tokyo", "2024-05-01T00:00:00Z"),
            "2024-05-02T09:00:00+09:00[Asia/Tokyo]"
        );
        assert_eq!(
            next_in("0 9 * * *", "Asia/Tokyo", "2024-04-30T23:59:00Z"),
            "2024-05-01T09:00:00+09:00[Asia/Tokyo]"
        );
        // Half-hour offsets.
        assert_eq!(
            next_in("0 * * * *", "Asia/Kolkata", "2024-05-01T00:10:00Z"),
            "2024-05-01T06:00:00+05:30[Asia/Kolkata]"
        );
        // A TZ= prefix overrides the caller's zone.
        let s = Schedule::parse("TZ=Asia/Tokyo 0 9 * * *").unwrap();
        assert_eq!(
            s.next(ts("2024-05-01T00:00:00Z"), &utc()).unwrap(),
            ts("2024-05-02T00:00:00Z")
        );
        assert!(Schedule::parse("CRON_TZ=Nowhere/Atlantis 0 9 * * *").is_err());
    }

    #[test]
    fn spring_forward_skips_the_missing_hour() {
        // 2024-03-10 in New York: 02:00 EST jumps to 03:00 EDT.
        let zone = "America/New_York";
        assert_eq!(
            next_in("30 2 * * *", zone, "2024-03-09T08:00:00Z"),
            "2024-03-11T02:30:00-04:00[America/New_York]"
        );
        assert_eq!(
            next_in("0 * * * *", zone, "2024-03-10T06:00:00Z"), // 01:00 EST
            "2024-03-10T03:00:00-04:00[America/New_York]"
        );
        assert_eq!(
            next_in("0 3 * * *", zone, "2024-03-09T09:00:00Z"),
            "2024-03-10T03:00:00-04:00[America/New_York]"
        );
    }

    #[test]
    fn fall_back_repeats_the_hour() {
        // 2024-11-03 in New York: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
        let zone = "America/New_York";
        assert_eq!(
            next_in("30 1 * * *", zone, "2024-11-03T04:00:00Z"),
            "2024-11-03T01:30:00-04:00[America/New_York]"
        );
        assert_eq!(
            next_in("30 1 * * *", zone, "2024-11-03T05:30:00Z"),
            "2024-11-03T01:30:00-05:00[America/New_York]"
        );
        assert_eq!(
            next_in("30 1 * * *", zone, "2024-11-03T06:30:00Z"),
            "2024-11-04T01:30:00-05:00[America/New_York]"
        );
        // A daily schedule outside the repeated hour fires once, 25 hours apart.
        assert_eq!(
            next_in("0 12 * * *", zone, "2024-11-02T16:00:00Z"),
            "2024-11-03T12:00:00-05:00[America/New_York]"
        );
    }

    #[test]
    fn midnight_missing_in_the_zone() {
        // America/Sao_Paulo 2018-11-04: 00:00 -03 jumped to 01:00 -02.
        let zone = "America/Sao_Paulo";
        assert_eq!(
            next_in("0 0 * * *", zone, "2018-11-03T03:00:00Z"),
            "2018-11-05T00:00:00-02:00[America/Sao_Paulo]"
        );
        assert_eq!(
            next_in("0 5 * * *", zone, "2018-11-03T09:00:00Z"),
            "2018-11-04T05:00:00-02:00[America/Sao_Paulo]"
        );
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * 32 * *",
            "* * * 13 *",
            "* * * * 7",
            "5-1 * * * *",
            "*/0 * * * *",
            "1-2-3 * * * *",
            "*/2/3 * * * *",
            "-1 * * * *",
            "x * * * *",
            "* * * foo *",
            "@every 5m",
            "@fortnightly",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(Schedule::parse("  0   0 * * *  ").is_ok());
    }
}
