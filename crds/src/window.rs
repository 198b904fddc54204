//! Pure calendar arithmetic of budget windows, shared by the operator and the gateway's local mode:
//! where the current window started and when it resets, in the budget's IANA time zone (days start at
//! local midnight, weeks on Monday, months on the 1st).

use crate::v1alpha1::BudgetWindow;
use chrono::{DateTime, Datelike as _, Days, Months, NaiveDate, TimeZone as _, Utc};
use chrono_tz::Tz;

/// The current window of a budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    /// `None` for a total budget, which never resets.
    pub resets_at: Option<DateTime<Utc>>,
}

/// The window containing `now`; `created` is where a total window starts. `None` for an unknown time zone.
pub fn current(
    window: BudgetWindow,
    time_zone: &str,
    now: DateTime<Utc>,
    created: DateTime<Utc>,
) -> Option<Window> {
    let tz: Tz = time_zone.parse().ok()?;
    let today = now.with_timezone(&tz).date_naive();
    let (first, next) = match window {
        BudgetWindow::Total => {
            return Some(Window {
                start: created,
                resets_at: None,
            });
        }
        BudgetWindow::Daily => (today, today.checked_add_days(Days::new(1))?),
        BudgetWindow::Weekly => {
            let monday = today
                .checked_sub_days(Days::new(u64::from(today.weekday().num_days_from_monday())))?;
            (monday, monday.checked_add_days(Days::new(7))?)
        }
        BudgetWindow::Monthly => {
            let first = today.with_day(1)?;
            (first, first.checked_add_months(Months::new(1))?)
        }
    };
    Some(Window {
        start: local_midnight(tz, first)?,
        resets_at: Some(local_midnight(tz, next)?),
    })
}

/// The first instant of `date` in `tz`. Where a daylight-saving change skips midnight, the day starts
/// at the first local time that exists.
fn local_midnight(tz: Tz, date: NaiveDate) -> Option<DateTime<Utc>> {
    (0..=2)
        .find_map(|hour| {
            tz.from_local_datetime(&date.and_hms_opt(hour, 0, 0)?)
                .earliest()
        })
        .map(|time| time.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn windows_follow_the_calendar_of_the_time_zone() {
        let created = utc(2024, 1, 1, 0, 0);
        let cases = [
            // 2025-03-12 is a Wednesday.
            (
                BudgetWindow::Daily,
                "UTC",
                utc(2025, 3, 12, 15, 0),
                utc(2025, 3, 12, 0, 0),
                Some(utc(2025, 3, 13, 0, 0)),
            ),
            (
                BudgetWindow::Weekly,
                "UTC",
                utc(2025, 3, 12, 15, 0),
                utc(2025, 3, 10, 0, 0),
                Some(utc(2025, 3, 17, 0, 0)),
            ),
            (
                BudgetWindow::Monthly,
                "UTC",
                utc(2025, 3, 12, 15, 0),
                utc(2025, 3, 1, 0, 0),
                Some(utc(2025, 4, 1, 0, 0)),
            ),
            (
                BudgetWindow::Monthly,
                "UTC",
                utc(2025, 12, 31, 23, 59),
                utc(2025, 12, 1, 0, 0),
                Some(utc(2026, 1, 1, 0, 0)),
            ),
            // 23:30 UTC on 31 March is already 1 April in Berlin (UTC+2 in summer).
            (
                BudgetWindow::Monthly,
                "Europe/Berlin",
                utc(2025, 3, 31, 23, 30),
                utc(2025, 3, 31, 22, 0),
                Some(utc(2025, 4, 30, 22, 0)),
            ),
            // The day of the spring change is 23 hours long in Berlin.
            (
                BudgetWindow::Daily,
                "Europe/Berlin",
                utc(2025, 3, 30, 12, 0),
                utc(2025, 3, 29, 23, 0),
                Some(utc(2025, 3, 30, 22, 0)),
            ),
            (
                BudgetWindow::Daily,
                "America/New_York",
                utc(2025, 1, 15, 3, 0),
                utc(2025, 1, 14, 5, 0),
                Some(utc(2025, 1, 15, 5, 0)),
            ),
            (
                BudgetWindow::Total,
                "UTC",
                utc(2025, 3, 12, 15, 0),
                created,
                None,
            ),
        ];
        for (window, tz, now, start, resets_at) in cases {
            assert_eq!(
                current(window, tz, now, created),
                Some(Window { start, resets_at }),
                "{window:?} {tz} {now}"
            );
        }
    }

    #[test]
    fn a_skipped_midnight_starts_the_day_at_the_first_existing_time() {
        // Santiago moved clocks from 00:00 to 01:00 on 2024-09-08.
        let window = current(
            BudgetWindow::Daily,
            "America/Santiago",
            utc(2024, 9, 8, 12, 0),
            utc(2024, 1, 1, 0, 0),
        )
        .expect("window");
        assert_eq!(window.start, utc(2024, 9, 8, 4, 0));
    }

    #[test]
    fn an_unknown_time_zone_has_no_window() {
        assert_eq!(
            current(
                BudgetWindow::Daily,
                "Mars/Olympus",
                utc(2025, 1, 1, 0, 0),
                utc(2025, 1, 1, 0, 0)
            ),
            None
        );
    }
}
