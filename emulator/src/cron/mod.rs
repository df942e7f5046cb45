//! Cron Triggers (<https://developers.cloudflare.com/workers/configuration/cron-triggers/>):
//! the expression syntax Cloudflare accepts, and the schedule that fires a
//! worker's `scheduled` handler while `pyflare dev` runs.
//!
//! Five fields, UTC: minute, hour, day of month, month, day of week.
//! Months take `JAN`-`DEC`; days of week are `1`-`7` with **1 = Sunday** or
//! `SUN`-`SAT` (Cloudflare follows Quartz here, not classic cron). Beside
//! `*`, lists, ranges and steps, day of month takes `L` (last day), `LW`
//! (last weekday) and `nW` (weekday nearest day n), and day of week takes
//! `L` (Saturday), `nL` (last such day of the month) and `n#k` (k-th such
//! day). As in classic cron, when both day fields are restricted a day
//! matching either one matches.

pub mod schedule;
mod time;

pub use time::{DateTime, from_unix_minutes};

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    /// The expression exactly as configured (what `controller.cron` says).
    pub source: String,
    minutes: u64,
    hours: u32,
    days: DayOfMonth,
    months: u16,
    weekdays: DayOfWeek,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DayOfMonth {
    any: bool,
    days: u32,
    last: bool,
    last_weekday: bool,
    /// Days n of `nW`.
    nearest_weekday: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DayOfWeek {
    any: bool,
    /// Bit 0 = Sunday ... bit 6 = Saturday.
    days: u8,
    /// `nL`: last such weekday of the month.
    last: u8,
    /// `n#k`: (weekday, k).
    nth: Vec<(u32, u32)>,
}

/// Why an expression is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression \"{expression}\": {reason}")]
pub struct CronError {
    pub expression: String,
    pub reason: String,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Cron {
    /// Parses one expression.
    pub fn parse(expression: &str) -> Result<Self, CronError> {
        let fail = |reason: String| CronError {
            expression: expression.to_owned(),
            reason,
        };
        let fields: Vec<&str> = expression.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(fail(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            )));
        }
        let minutes = parse_set(fields[0], 0, 59, &[]).map_err(|r| fail(format!("minute: {r}")))?;
        let hours = parse_set(fields[1], 0, 23, &[]).map_err(|r| fail(format!("hour: {r}")))?;
        let days = parse_day_of_month(fields[2]).map_err(|r| fail(format!("day of month: {r}")))?;
        let months =
            parse_set(fields[3], 1, 12, &MONTHS).map_err(|r| fail(format!("month: {r}")))?;
        let weekdays =
            parse_day_of_week(fields[4]).map_err(|r| fail(format!("day of week: {r}")))?;
        Ok(Self {
            source: expression.to_owned(),
            minutes,
            hours: hours as u32,
            days,
            months: (months >> 1) as u16,
            weekdays,
        })
    }

    /// Whether the schedule fires in the minute `at` (seconds are ignored).
    pub fn matches(&self, at: &DateTime) -> bool {
        if self.minutes & (1 << at.minute) == 0
            || self.hours & (1 << at.hour) == 0
            || self.months & (1 << (at.month - 1)) == 0
        {
            return false;
        }
        let dom = self.days.matches(at);
        let dow = self.weekdays.matches(at);
        match (self.days.any, self.weekdays.any) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }
}

impl DayOfMonth {
    fn matches(&self, at: &DateTime) -> bool {
        if self.any || self.days & (1 << at.day) != 0 {
            return true;
        }
        let last = time::days_in_month(at.year, at.month);
        if self.last && at.day == last {
            return true;
        }
        if self.last_weekday && at.day == nearest_weekday(at.year, at.month, last) {
            return true;
        }
        self.nearest_weekday
            .iter()
            .any(|n| at.day == nearest_weekday(at.year, at.month, (*n).min(last)))
    }
}

impl DayOfWeek {
    fn matches(&self, at: &DateTime) -> bool {
        if self.any || self.days & (1 << at.weekday) != 0 {
            return true;
        }
        let last = time::days_in_month(at.year, at.month);
        if self.last & (1 << at.weekday) != 0 && at.day + 7 > last {
            return true;
        }
        self.nth
            .iter()
            .any(|(weekday, k)| *weekday == at.weekday && (at.day - 1) / 7 + 1 == *k)
    }
}

/// The weekday (Mon-Fri) nearest to `day` within the same month.
fn nearest_weekday(year: i64, month: u32, day: u32) -> u32 {
    let weekday = time::weekday(year, month, day);
    let last = time::days_in_month(year, month);
    match weekday {
        6 if day == 1 => 3,          // Saturday the 1st: Monday the 3rd
        6 => day - 1,                // Saturday: Friday before
        0 if day == last => day - 2, // Sunday the last: Friday before
        0 => day + 1,                // Sunday: Monday after
        _ => day,
    }
}

fn parse_number(text: &str, names: &[&str], base: u32) -> Result<u32, String> {
    if let Ok(n) = text.parse::<u32>() {
        return Ok(n);
    }
    names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
        .map(|i| i as u32 + base)
        .ok_or_else(|| {
            format!(
                "`{text}` is not a number{}",
                if names.is_empty() { "" } else { " or a name" }
            )
        })
}

/// A set of values in `min..=max` as a bit mask (bit n = value n).
fn parse_set(field: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let mut set = 0u64;
    for part in field.split(',') {
        if part.is_empty() {
            return Err("empty list item".into());
        }
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| format!("step `{step}` is not a number"))?;
                if step == 0 {
                    return Err("a step must be at least 1".into());
                }
                (range, step)
            }
            None => (part, 1),
        };
        let (start, end) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (parse_number(a, names, min)?, parse_number(b, names, min)?)
        } else {
            let start = parse_number(range, names, min)?;
            // `a/n` runs from a to the end, as in Quartz.
            (start, if part.contains('/') { max } else { start })
        };
        for value in [start, end] {
            if value < min || value > max {
                return Err(format!("{value} is out of range {min}-{max}"));
            }
        }
        if start > end {
            return Err(format!("range {start}-{end} runs backwards"));
        }
        let mut value = start;
        while value <= end {
            set |= 1 << value;
            value += step;
        }
    }
    Ok(set)
}

fn parse_day_of_month(field: &str) -> Result<DayOfMonth, String> {
    let mut out = DayOfMonth {
        any: field == "*",
        days: 0,
        last: false,
        last_weekday: false,
        nearest_weekday: vec![],
    };
    if out.any {
        return Ok(out);
    }
    for part in field.split(',') {
        let upper = part.to_ascii_uppercase();
        if upper == "L" {
            out.last = true;
        } else if upper == "LW" {
            out.last_weekday = true;
        } else if let Some(n) = upper.strip_suffix('W') {
            let n: u32 = n.parse().map_err(|_| format!("`{part}` is not nW"))?;
            if !(1..=31).contains(&n) {
                return Err(format!("{n} is out of range 1-31"));
            }
            out.nearest_weekday.push(n);
        } else if part == "?" {
            return Err("`?` is not supported by Cloudflare; use *".into());
        } else {
            out.days |= parse_set(part, 1, 31, &[])? as u32;
        }
    }
    Ok(out)
}

fn parse_day_of_week(field: &str) -> Result<DayOfWeek, String> {
    let mut out = DayOfWeek {
        any: field == "*",
        days: 0,
        last: 0,
        nth: vec![],
    };
    if out.any {
        return Ok(out);
    }
    let weekday = |text: &str| -> Result<u32, String> {
        let n = parse_number(text, &WEEKDAYS, 1)?;
        if !(1..=7).contains(&n) {
            return Err(format!("{n} is out of range 1-7 (1 = Sunday)"));
        }
        Ok(n - 1)
    };
    for part in field.split(',') {
        let upper = part.to_ascii_uppercase();
        if upper == "L" {
            out.days |= 1 << 6;
        } else if let Some(day) = upper.strip_suffix('L') {
            out.last |= 1 << weekday(day)?;
        } else if let Some((day, k)) = upper.split_once('#') {
            let k: u32 = k.parse().map_err(|_| format!("`{part}` is not d#k"))?;
            if !(1..=5).contains(&k) {
                return Err(format!("#{k} is out of range 1-5"));
            }
            out.nth.push((weekday(day)?, k));
        } else if part == "?" {
            return Err("`?` is not supported by Cloudflare; use *".into());
        } else {
            // Values 1-7 become bits 0-6.
            let set = parse_set(part, 1, 7, &WEEKDAYS).map_err(|e| {
                if e.contains("out of range") {
                    format!("{e} (1 = Sunday)")
                } else {
                    e
                }
            })?;
            out.days |= (set >> 1) as u8;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
