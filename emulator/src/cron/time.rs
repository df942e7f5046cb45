//! Civil UTC dates from Unix time, enough for cron matching (no time zones:
//! Cron Triggers run on UTC).

/// One UTC minute, broken down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    /// 1-12.
    pub month: u32,
    /// 1-31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    /// 0 = Sunday ... 6 = Saturday.
    pub weekday: u32,
}

/// The UTC minute `minutes` minutes after the Unix epoch.
pub fn from_unix_minutes(minutes: i64) -> DateTime {
    let days = minutes.div_euclid(1440);
    let rest = minutes.rem_euclid(1440);
    let (year, month, day) = pyflare_bindings::clock::civil_from_days(days);
    DateTime {
        year,
        month,
        day,
        hour: (rest / 60) as u32,
        minute: (rest % 60) as u32,
        weekday: (days + 4).rem_euclid(7) as u32,
    }
}

/// Days since 1970-01-01 of (y, m, d).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// 0 = Sunday.
pub(crate) fn weekday(year: i64, month: u32, day: u32) -> u32 {
    (days_from_civil(year, month, day) + 4).rem_euclid(7) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        // 2026-11-24 20:42 UTC is a Tuesday.
        let at = from_unix_minutes(1_795_552_920 / 60);
        assert_eq!(
            (at.year, at.month, at.day, at.hour, at.minute, at.weekday),
            (2026, 11, 24, 20, 42, 2)
        );
        assert_eq!(from_unix_minutes(0).weekday, 4); // 1970-01-01, Thursday
        let leap = from_unix_minutes(days_from_civil(2024, 2, 29) * 1440);
        assert_eq!((leap.year, leap.month, leap.day), (2024, 2, 29));
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
    }
}
