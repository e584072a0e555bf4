//! Business hours (« heures ouvrées ») in a time zone, with French public holidays.
//!
//! « Heures ouvrées » has no legal definition: the contract fixes the window. The default is
//! Monday–Friday 08:00–18:00 Europe/Paris, public holidays excluded (Code du travail L3133-1).
//! Windows are civil times of day; each is turned into real instants through the time zone on
//! each day, so durations stay correct across daylight-saving changes.

use std::collections::BTreeSet;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// How a calendar is written in configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalendarSpec {
    /// IANA time zone name.
    pub time_zone: String,
    /// Working days, as `mon`, `tue`, … `sun`.
    pub workdays: Vec<String>,
    /// Daily working windows as `HH:MM-HH:MM`, e.g. `["08:30-12:00", "13:30-17:30"]`.
    pub windows: Vec<String>,
    /// Whit Monday worked as the « journée de solidarité ».
    pub whit_monday_worked: bool,
    /// Extra days the métropole is closed (`YYYY-MM-DD`).
    pub closures: Vec<Date>,
}

impl Default for CalendarSpec {
    fn default() -> Self {
        Self {
            time_zone: "Europe/Paris".into(),
            workdays: ["mon", "tue", "wed", "thu", "fri"].map(String::from).to_vec(),
            windows: vec!["08:00-18:00".into()],
            whit_monday_worked: false,
            closures: Vec::new(),
        }
    }
}

/// Why a calendar could not be built or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("unknown time zone `{0}`")]
    TimeZone(String),
    #[error("unknown working day `{0}` (expected mon, tue, wed, thu, fri, sat or sun)")]
    Workday(String),
    #[error("bad working window `{0}` (expected HH:MM-HH:MM with start before end)")]
    Window(String),
    #[error("working windows overlap or are out of order: `{0}`")]
    Overlap(String),
    #[error("the calendar has no working time (no working day or no window)")]
    NoWorkingTime,
    #[error("a business duration cannot be negative")]
    Negative,
    #[error("date out of the supported range")]
    Range,
}

/// A business calendar: where and when the métropole's ops team works.
#[derive(Debug, Clone)]
pub struct BusinessCalendar {
    tz: TimeZone,
    workdays: [bool; 7],
    windows: Vec<(Time, Time)>,
    whit_monday_worked: bool,
    closures: BTreeSet<Date>,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
/// How far ahead an addition may search for working time before giving up.
const MAX_SEARCH_DAYS: u32 = 3 * 366;

fn parse_hm(s: &str) -> Option<Time> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

impl BusinessCalendar {
    pub fn from_spec(spec: &CalendarSpec) -> Result<Self, CalendarError> {
        let tz = TimeZone::get(&spec.time_zone).map_err(|_| CalendarError::TimeZone(spec.time_zone.clone()))?;
        let mut workdays = [false; 7];
        for d in &spec.workdays {
            let i = DAY_NAMES.iter().position(|n| n == d).ok_or_else(|| CalendarError::Workday(d.clone()))?;
            workdays[i] = true;
        }
        let mut windows = Vec::with_capacity(spec.windows.len());
        for w in &spec.windows {
            let (a, b) = w.split_once('-').ok_or_else(|| CalendarError::Window(w.clone()))?;
            let (Some(a), Some(b)) = (parse_hm(a), parse_hm(b)) else {
                return Err(CalendarError::Window(w.clone()));
            };
            if a >= b {
                return Err(CalendarError::Window(w.clone()));
            }
            if windows.last().is_some_and(|&(_, prev_end)| prev_end > a) {
                return Err(CalendarError::Overlap(w.clone()));
            }
            windows.push((a, b));
        }
        if windows.is_empty() || !workdays.contains(&true) {
            return Err(CalendarError::NoWorkingTime);
        }
        Ok(Self {
            tz,
            workdays,
            windows,
            whit_monday_worked: spec.whit_monday_worked,
            closures: spec.closures.iter().copied().collect(),
        })
    }

    /// Monday–Friday 08:00–18:00 Europe/Paris, French public holidays.
    pub fn french_default() -> Result<Self, CalendarError> {
        Self::from_spec(&CalendarSpec::default())
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// Whether `date` has working windows.
    pub fn is_business_day(&self, date: Date) -> bool {
        let wd = usize::from(date.weekday().to_monday_zero_offset().unsigned_abs());
        if !self.workdays[wd] || self.closures.contains(&date) {
            return false;
        }
        match french_holiday(date) {
            None => true,
            Some(Holiday::WhitMonday) => self.whit_monday_worked,
            Some(_) => false,
        }
    }

    /// The working windows of `date` as real instants (empty on a non-working day).
    fn windows_on(&self, date: Date) -> Result<Vec<(Timestamp, Timestamp)>, CalendarError> {
        if !self.is_business_day(date) {
            return Ok(Vec::new());
        }
        let at = |t: Time| {
            self.tz.to_ambiguous_timestamp(date.to_datetime(t)).compatible().map_err(|_| CalendarError::Range)
        };
        self.windows.iter().map(|&(a, b)| Ok((at(a)?, at(b)?))).collect()
    }

    fn local_date(&self, t: Timestamp) -> Date {
        self.tz.to_datetime(t).date()
    }

    /// The instant `amount` of business time after `start`. A due instant always lies inside
    /// a working window or at its end; adding zero returns `start`.
    pub fn add(&self, start: Timestamp, amount: SignedDuration) -> Result<Timestamp, CalendarError> {
        if amount.is_negative() {
            return Err(CalendarError::Negative);
        }
        if amount.is_zero() {
            return Ok(start);
        }
        let mut left = amount;
        let mut date = self.local_date(start);
        for _ in 0..MAX_SEARCH_DAYS {
            for (a, b) in self.windows_on(date)? {
                let from = a.max(start);
                if from >= b {
                    continue;
                }
                let avail = b.duration_since(from);
                if left <= avail {
                    return from.checked_add(left).map_err(|_| CalendarError::Range);
                }
                left -= avail;
            }
            date = date.tomorrow().map_err(|_| CalendarError::Range)?;
        }
        Err(CalendarError::NoWorkingTime)
    }

    /// `hours` business hours after `start`.
    pub fn add_hours(&self, start: Timestamp, hours: u32) -> Result<Timestamp, CalendarError> {
        self.add(start, SignedDuration::from_hours(i64::from(hours)))
    }

    /// Business time between `from` and `to` (zero when `to` is not after `from`).
    pub fn business_time_between(&self, from: Timestamp, to: Timestamp) -> Result<SignedDuration, CalendarError> {
        let mut total = SignedDuration::ZERO;
        if to <= from {
            return Ok(total);
        }
        let last = self.local_date(to);
        let mut date = self.local_date(from);
        while date <= last {
            for (a, b) in self.windows_on(date)? {
                let (s, e) = (a.max(from), b.min(to));
                if s < e {
                    total += e.duration_since(s);
                }
            }
            date = date.tomorrow().map_err(|_| CalendarError::Range)?;
        }
        Ok(total)
    }
}

/// The eleven French public holidays (Code du travail L3133-1), outside Alsace-Moselle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holiday {
    NewYear,
    EasterMonday,
    LabourDay,
    VictoryDay,
    Ascension,
    WhitMonday,
    BastilleDay,
    Assumption,
    AllSaints,
    Armistice,
    Christmas,
}

impl Holiday {
    pub fn name_fr(self) -> &'static str {
        match self {
            Self::NewYear => "Jour de l'an",
            Self::EasterMonday => "Lundi de Pâques",
            Self::LabourDay => "Fête du Travail",
            Self::VictoryDay => "Victoire 1945",
            Self::Ascension => "Ascension",
            Self::WhitMonday => "Lundi de Pentecôte",
            Self::BastilleDay => "Fête nationale",
            Self::Assumption => "Assomption",
            Self::AllSaints => "Toussaint",
            Self::Armistice => "Armistice 1918",
            Self::Christmas => "Noël",
        }
    }
}

/// Easter Sunday of `year` (Gregorian computus, the « anonymous » algorithm).
pub fn easter_sunday(year: i16) -> Result<Date, CalendarError> {
    let y = i32::from(year);
    let a = y % 19;
    let b = y / 100;
    let c = y % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    let month = i8::try_from(month).map_err(|_| CalendarError::Range)?;
    let day = i8::try_from(day).map_err(|_| CalendarError::Range)?;
    Date::new(year, month, day).map_err(|_| CalendarError::Range)
}

/// The French public holidays of `year`, in date order.
pub fn french_holidays(year: i16) -> Result<Vec<(Date, Holiday)>, CalendarError> {
    let easter = easter_sunday(year)?;
    let after_easter = |days: i64| easter.checked_add(jiff::Span::new().days(days)).map_err(|_| CalendarError::Range);
    let fixed = |m: i8, d: i8| Date::new(year, m, d).map_err(|_| CalendarError::Range);
    let mut v = vec![
        (fixed(1, 1)?, Holiday::NewYear),
        (after_easter(1)?, Holiday::EasterMonday),
        (fixed(5, 1)?, Holiday::LabourDay),
        (fixed(5, 8)?, Holiday::VictoryDay),
        (after_easter(39)?, Holiday::Ascension),
        (after_easter(50)?, Holiday::WhitMonday),
        (fixed(7, 14)?, Holiday::BastilleDay),
        (fixed(8, 15)?, Holiday::Assumption),
        (fixed(11, 1)?, Holiday::AllSaints),
        (fixed(11, 11)?, Holiday::Armistice),
        (fixed(12, 25)?, Holiday::Christmas),
    ];
    // Ascension can fall on 1 May or 8 May (e.g. 2008): keep both entries, in date order.
    v.sort_by_key(|&(d, _)| d);
    Ok(v)
}

/// The holiday `date` is, if any.
pub fn french_holiday(date: Date) -> Option<Holiday> {
    let fixed = match (date.month(), date.day()) {
        (1, 1) => Some(Holiday::NewYear),
        (5, 1) => Some(Holiday::LabourDay),
        (5, 8) => Some(Holiday::VictoryDay),
        (7, 14) => Some(Holiday::BastilleDay),
        (8, 15) => Some(Holiday::Assumption),
        (11, 1) => Some(Holiday::AllSaints),
        (11, 11) => Some(Holiday::Armistice),
        (12, 25) => Some(Holiday::Christmas),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    // Movable feasts fall between 23 March (Easter Monday) and 14 June (Whit Monday).
    if !(3..=6).contains(&date.month()) {
        return None;
    }
    let easter = easter_sunday(date.year()).ok()?;
    let offset = date.since(easter).ok()?.get_days();
    match offset {
        1 if date.weekday() == Weekday::Monday => Some(Holiday::EasterMonday),
        39 => Some(Holiday::Ascension),
        50 => Some(Holiday::WhitMonday),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use proptest::prelude::*;

    fn paris(s: &str) -> Timestamp {
        format!("{s}[Europe/Paris]").parse::<jiff::Zoned>().unwrap().timestamp()
    }

    fn cal() -> BusinessCalendar {
        BusinessCalendar::french_default().unwrap()
    }

    #[test]
    fn worked_example_over_ascension() {
        // Wed 13 May 2026 10:00 + 48 business hours, Ascension on Thu 14 May.
        let due = cal().add_hours(paris("2026-05-13T10:00"), 48).unwrap();
        assert_eq!(due, paris("2026-05-20T18:00"));
    }

    #[test]
    fn start_outside_hours_starts_at_next_window() {
        // Friday evening → Monday 08:00 + 10 h = Monday 18:00.
        assert_eq!(cal().add_hours(paris("2026-11-20T19:30"), 10).unwrap(), paris("2026-11-23T18:00"));
        // Saturday → Monday.
        assert_eq!(cal().add_hours(paris("2026-11-21T10:00"), 1).unwrap(), paris("2026-11-23T09:00"));
    }

    #[test]
    fn year_end_skips_christmas_and_new_year() {
        // Thu 24 Dec 2026 17:00: 1 h that day, 25 Dec holiday, weekend, Mon 28 → Thu 31 (40 h),
        // 1 Jan holiday, weekend, Mon 4 Jan 2027 08:00 + 7 h.
        assert_eq!(cal().add_hours(paris("2026-12-24T17:00"), 48).unwrap(), paris("2027-01-04T15:00"));
    }

    #[test]
    fn split_windows() {
        let spec = CalendarSpec { windows: vec!["08:30-12:00".into(), "13:30-17:30".into()], ..Default::default() };
        let c = BusinessCalendar::from_spec(&spec).unwrap();
        // Mon 16 Nov 2026 11:00: 1 h before lunch, 4 h afternoon, next day 08:30 + 2 h.
        assert_eq!(c.add_hours(paris("2026-11-16T11:00"), 7).unwrap(), paris("2026-11-17T10:30"));
        assert_eq!(c.add_hours(paris("2026-11-16T12:30"), 1).unwrap(), paris("2026-11-16T14:30"));
    }

    #[test]
    fn dst_night_windows_measure_real_time() {
        // A window across the spring-forward night lasts one hour less in real time.
        let spec = CalendarSpec {
            workdays: DAY_NAMES.map(String::from).to_vec(),
            windows: vec!["01:00-04:00".into()],
            ..Default::default()
        };
        let c = BusinessCalendar::from_spec(&spec).unwrap();
        let a = paris("2026-03-29T00:00");
        let b = paris("2026-03-29T23:00");
        assert_eq!(c.business_time_between(a, b).unwrap(), SignedDuration::from_hours(2));
        let a = paris("2026-10-25T00:00");
        let b = paris("2026-10-25T23:00");
        assert_eq!(c.business_time_between(a, b).unwrap(), SignedDuration::from_hours(4));
    }

    #[test]
    fn whit_monday_can_be_worked() {
        let whit = date(2026, 5, 25);
        assert!(!cal().is_business_day(whit));
        let c = BusinessCalendar::from_spec(&CalendarSpec { whit_monday_worked: true, ..Default::default() }).unwrap();
        assert!(c.is_business_day(whit));
    }

    #[test]
    fn closures_are_skipped() {
        let c = BusinessCalendar::from_spec(&CalendarSpec { closures: vec![date(2026, 11, 23)], ..Default::default() })
            .unwrap();
        assert_eq!(c.add_hours(paris("2026-11-23T09:00"), 1).unwrap(), paris("2026-11-24T09:00"));
    }

    #[test]
    fn bad_specs_are_refused() {
        let bad = |s: CalendarSpec| BusinessCalendar::from_spec(&s).unwrap_err();
        assert!(matches!(
            bad(CalendarSpec { time_zone: "Mars/Olympus".into(), ..Default::default() }),
            CalendarError::TimeZone(_)
        ));
        assert!(matches!(
            bad(CalendarSpec { workdays: vec!["lundi".into()], ..Default::default() }),
            CalendarError::Workday(_)
        ));
        assert!(matches!(
            bad(CalendarSpec { windows: vec!["18:00-08:00".into()], ..Default::default() }),
            CalendarError::Window(_)
        ));
        assert!(matches!(
            bad(CalendarSpec { windows: vec!["8h-12h".into()], ..Default::default() }),
            CalendarError::Window(_)
        ));
        assert!(matches!(
            bad(CalendarSpec { windows: vec!["08:00-12:00".into(), "11:00-13:00".into()], ..Default::default() }),
            CalendarError::Overlap(_)
        ));
        assert!(matches!(bad(CalendarSpec { workdays: vec![], ..Default::default() }), CalendarError::NoWorkingTime));
        assert_eq!(cal().add(paris("2026-11-23T09:00"), SignedDuration::from_secs(-1)), Err(CalendarError::Negative));
    }

    #[test]
    fn known_easter_dates() {
        for (y, m, d) in [
            (1990, 4, 15),
            (2000, 4, 23),
            (2008, 3, 23),
            (2011, 4, 24),
            (2019, 4, 21),
            (2024, 3, 31),
            (2025, 4, 20),
            (2026, 4, 5),
            (2038, 4, 25),
            (2100, 3, 28),
        ] {
            assert_eq!(easter_sunday(y).unwrap(), date(y, m, d), "{y}");
        }
    }

    #[test]
    fn holidays_2026() {
        let h = french_holidays(2026).unwrap();
        assert_eq!(h.len(), 11);
        assert!(h.contains(&(date(2026, 4, 6), Holiday::EasterMonday)));
        assert!(h.contains(&(date(2026, 5, 14), Holiday::Ascension)));
        assert!(h.contains(&(date(2026, 5, 25), Holiday::WhitMonday)));
        assert!(h.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn holiday_lookup_agrees_with_the_list_1990_2100() {
        let c = cal();
        for y in 1990..=2100 {
            for (d, h) in french_holidays(y).unwrap() {
                // Ascension on 1 May (2008) is reported as the fixed holiday: both are closed.
                let found = french_holiday(d).unwrap();
                assert!(found == h || matches!(found, Holiday::LabourDay | Holiday::VictoryDay), "{d}");
                assert!(!c.is_business_day(d), "{d} is a working day");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn additions_compose(start_s in 1_700_000_000i64..2_100_000_000i64, h1 in 0i64..120, h2 in 0i64..120) {
            let c = cal();
            let start = Timestamp::from_second(start_s).unwrap();
            let one = c.add(start, SignedDuration::from_hours(h1)).unwrap();
            let two = c.add(one, SignedDuration::from_hours(h2)).unwrap();
            let both = c.add(start, SignedDuration::from_hours(h1 + h2)).unwrap();
            prop_assert!(one >= start);
            // Adding h2 from the end of a window lands at the same instant as adding h1+h2.
            prop_assert_eq!(two, both);
            if h1 > 0 {
                let local = one.to_zoned(c.time_zone().clone());
                let t = local.time();
                prop_assert!(c.is_business_day(local.date()));
                prop_assert!(t > Time::constant(8, 0, 0, 0) && t <= Time::constant(18, 0, 0, 0), "{}", local);
                prop_assert_eq!(c.business_time_between(start, one).unwrap(), SignedDuration::from_hours(h1));
            }
        }
    }
}
