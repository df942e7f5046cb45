use super::time::days_from_civil;
use super::*;

fn at(year: i64, month: u32, day: u32, hour: u32, minute: u32) -> DateTime {
    from_unix_minutes(days_from_civil(year, month, day) * 1440 + i64::from(hour * 60 + minute))
}

fn fires(expr: &str, when: DateTime) -> bool {
    Cron::parse(expr).unwrap().matches(&when)
}

#[test]
fn cron_basic_fields_lists_ranges_steps() {
    assert!(fires("* * * * *", at(2026, 11, 24, 20, 42)));
    assert!(fires("*/15 * * * *", at(2026, 11, 24, 20, 30)));
    assert!(!fires("*/15 * * * *", at(2026, 11, 24, 20, 31)));
    assert!(fires("5/20 * * * *", at(2026, 11, 24, 20, 45)));
    assert!(fires("0,30 9-17 * * *", at(2026, 11, 24, 17, 30)));
    assert!(!fires("0,30 9-17 * * *", at(2026, 11, 24, 18, 0)));
    assert!(fires("0 0 1 jan,JUL *", at(2026, 7, 1, 0, 0)));
    assert!(!fires("0 0 1 jan,JUL *", at(2026, 8, 1, 0, 0)));
    assert!(fires("0 12 * 3-5/2 *", at(2026, 5, 9, 12, 0)));
    assert!(!fires("0 12 * 3-5/2 *", at(2026, 4, 9, 12, 0)));
}

#[test]
fn cron_day_of_week_counts_from_sunday_as_1() {
    // 2026-11-22 is a Sunday, 2026-11-23 a Monday.
    assert!(fires("0 17 * * sun", at(2026, 11, 22, 17, 0)));
    assert!(fires("0 17 * * 1", at(2026, 11, 22, 17, 0)));
    assert!(!fires("0 17 * * 1", at(2026, 11, 23, 17, 0)));
    for day in 23..=27 {
        assert!(fires("0 9 * * mon-fri", at(2026, 11, day, 9, 0)));
        assert!(fires("0 9 * * 2-6", at(2026, 11, day, 9, 0)));
    }
    assert!(!fires("0 9 * * mon-fri", at(2026, 11, 28, 9, 0)));
    assert!(
        fires("0 9 * * L", at(2026, 11, 28, 9, 0)),
        "L alone is Saturday"
    );
}

#[test]
fn cron_quartz_extensions() {
    // Last weekday of November 2026: Monday the 30th.
    assert!(fires("59 23 LW * *", at(2026, 11, 30, 23, 59)));
    assert!(!fires("59 23 LW * *", at(2026, 11, 27, 23, 59)));
    // Last weekday of May 2026 (31st is a Sunday): Friday the 29th.
    assert!(fires("59 23 LW * *", at(2026, 5, 29, 23, 59)));
    // Last Friday: the 27th.
    assert!(fires("0 18 * * 6L", at(2026, 11, 27, 18, 0)));
    assert!(fires("0 18 * * friL", at(2026, 11, 27, 18, 0)));
    assert!(!fires("0 18 * * 6L", at(2026, 11, 20, 18, 0)));
    // Third Friday: the 20th.
    assert!(fires("0 0 * * 6#3", at(2026, 11, 20, 0, 0)));
    assert!(fires("0 0 * * FRI#3", at(2026, 11, 20, 0, 0)));
    assert!(!fires("0 0 * * 6#3", at(2026, 11, 13, 0, 0)));
    // The 15th is a Sunday: nearest weekday is Monday the 16th.
    assert!(fires("0 0 15W * *", at(2026, 11, 16, 0, 0)));
    assert!(!fires("0 0 15W * *", at(2026, 11, 15, 0, 0)));
    // Last day of a leap February.
    assert!(fires("0 0 L * *", at(2028, 2, 29, 0, 0)));
    assert!(!fires("0 0 L * *", at(2028, 2, 28, 0, 0)));
}

#[test]
fn cron_both_day_fields_restricted_match_either() {
    // The 1st, or any Monday.
    assert!(fires("0 0 1 * 2", at(2026, 11, 1, 0, 0)));
    assert!(fires("0 0 1 * 2", at(2026, 11, 23, 0, 0)));
    assert!(!fires("0 0 1 * 2", at(2026, 11, 24, 0, 0)));
}

#[test]
fn cron_invalid_expressions_say_why() {
    let err = |expr: &str| Cron::parse(expr).unwrap_err().to_string();
    assert_eq!(
        err("* * * *"),
        "invalid cron expression \"* * * *\": expected 5 fields (minute hour day-of-month month day-of-week), found 4"
    );
    assert_eq!(
        err("60 * * * *"),
        "invalid cron expression \"60 * * * *\": minute: 60 is out of range 0-59"
    );
    assert_eq!(
        err("0 0 * * 0"),
        "invalid cron expression \"0 0 * * 0\": day of week: 0 is out of range 1-7 (1 = Sunday)"
    );
    assert_eq!(
        err("0 0 ? * 2"),
        "invalid cron expression \"0 0 ? * 2\": day of month: `?` is not supported by Cloudflare; use *"
    );
    assert_eq!(
        err("*/0 * * * *"),
        "invalid cron expression \"*/0 * * * *\": minute: a step must be at least 1"
    );
    assert_eq!(
        err("0 5-1 * * *"),
        "invalid cron expression \"0 5-1 * * *\": hour: range 5-1 runs backwards"
    );
    assert_eq!(
        err("0 0 * foo *"),
        "invalid cron expression \"0 0 * foo *\": month: `foo` is not a number or a name"
    );
}
