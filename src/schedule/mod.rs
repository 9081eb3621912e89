//! When policies run: schedules in a timezone, and the next due instant after a given one.
//!
//! Every schedule kind is a 5-field cron pattern underneath (croner), so all of them share its
//! daylight-saving rules, which are the ones cron users expect: a time that does not exist on a
//! spring-forward day runs once at the first instant after the gap, and a time repeated on a
//! fall-back day runs once, at its first occurrence.
//!
//! The config spells a schedule as one of
//! `manual`, `hourly at :MM`, `daily at HH:MM`, `weekly on DAY at HH:MM` (DAY: mon..sun),
//! `monthly on D at HH:MM` (D: 1..31; months without that day are skipped), or
//! `cron MIN HOUR DOM MONTH DOW` (lists, ranges and steps as in crontab).

pub mod notify;
pub mod runlog;
pub mod serve;
pub mod service;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use crate::pipeline::control::DEFAULT_KEEP_ALIVE;
use crate::settings::{Invalid, positive_duration, resolve};
use notify::{Notify, NotifySettings};

/// When a policy runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Only when started by hand (`custodian run POLICY`).
    Manual,
    /// On a cron pattern; `spec` is the schedule as written, for messages.
    At { spec: String, cron: Box<Cron> },
}

const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn time_of_day(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{s}` is not a time of day; write HH:MM, such as 02:30");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if m.len() != 2 {
        return Err(bad());
    }
    match (h.parse::<u32>(), m.parse::<u32>()) {
        (Ok(h), Ok(m)) if h < 24 && m < 60 => Ok((h, m)),
        _ => Err(bad()),
    }
}

fn cron(pattern: &str) -> Result<Cron, String> {
    if pattern.split_whitespace().count() != 5 {
        return Err(format!(
            "`{pattern}` is not a 5-field cron expression (minute hour day-of-month month day-of-week)"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .build()
        .parse(pattern)
        .map_err(|e| format!("`{pattern}` is not a valid cron expression: {e}"))
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(spec: &str) -> Result<Schedule, String> {
        let words: Vec<&str> = spec.split_whitespace().collect();
        let pattern = match words.as_slice() {
            ["manual"] => return Ok(Schedule::Manual),
            ["hourly", "at", minute] => {
                let m = minute
                    .strip_prefix(':')
                    .and_then(|m| m.parse::<u32>().ok())
                    .filter(|m| *m < 60)
                    .ok_or_else(|| format!("`{minute}` is not a minute; write :MM, such as :15"))?;
                format!("{m} * * * *")
            }
            ["daily", "at", time] => {
                let (h, m) = time_of_day(time)?;
                format!("{m} {h} * * *")
            }
            ["weekly", "on", day, "at", time] => {
                let d = DAYS
                    .iter()
                    .position(|d| d.eq_ignore_ascii_case(day))
                    .ok_or_else(|| {
                        format!("`{day}` is not a day; use mon, tue, wed, thu, fri, sat or sun")
                    })?;
                let (h, m) = time_of_day(time)?;
                format!("{m} {h} * * {d}")
            }
            ["monthly", "on", day, "at", time] => {
                let d = day
                    .parse::<u32>()
                    .ok()
                    .filter(|d| (1..=31).contains(d))
                    .ok_or_else(|| format!("`{day}` is not a day of the month (1..31)"))?;
                let (h, m) = time_of_day(time)?;
                format!("{m} {h} {d} * *")
            }
            ["cron", ..] => words[1..].join(" "),
            _ => {
                return Err(format!(
                    "`{spec}` is not a schedule; use manual, `hourly at :MM`, `daily at HH:MM`, \
                     `weekly on DAY at HH:MM`, `monthly on D at HH:MM` or `cron MIN HOUR DOM MONTH DOW`"
                ));
            }
        };
        Ok(Schedule::At {
            spec: spec.to_owned(),
            cron: Box::new(cron(&pattern)?),
        })
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Manual => f.write_str("manual"),
            Schedule::At { spec, .. } => f.write_str(spec),
        }
    }
}

impl Schedule {
    /// The first instant strictly after `after` at which the schedule is due, in `tz`; None for
    /// a manual schedule.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Manual => None,
            Schedule::At { cron, .. } => cron
                .find_next_occurrence(&after.with_timezone(&tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

/// A timezone by IANA name (`Europe/London`), or the system's when `name` is None.
fn timezone(name: Option<&str>) -> Result<Tz, String> {
    match name {
        Some(n) => n.parse::<Tz>().map_err(|_| {
            format!("`{n}` is not an IANA timezone name; write one such as Europe/London or America/New_York")
        }),
        None => Ok(system_timezone()),
    }
}

/// The settings every scheduled job has: each policy, and the lifecycle sweep
/// (docs/configuration.md, "Job settings").
#[derive(Clone, Debug)]
pub struct JobSettings {
    /// When `custodian serve` runs the job (default: manual).
    pub schedule: Schedule,
    /// The timezone of the schedule, of relative date criteria and of the filename format's
    /// date fields (default: the system's).
    pub timezone: Tz,
    /// Succeeded runs older than this many days leave the job history (default 60).
    pub keep_job_history_days: u32,
    /// A run still going after this long is stopped as `timed_out` (default: no limit).
    pub time_limit: Option<Duration>,
    /// A run that reports no progress for this long is stopped as `stalled` (default 15 min).
    pub keep_alive: Duration,
    /// Each run writes a detailed log file here (default: none).
    pub log_dir: Option<PathBuf>,
    /// Who hears about completed and failed runs.
    pub notify: Option<Notify>,
}

/// The job-setting keys of a table that has them, as written.
#[derive(Default)]
pub struct JobKeys<'a> {
    pub schedule: Option<&'a str>,
    pub timezone: Option<&'a str>,
    pub keep_job_history_days: Option<u32>,
    pub time_limit: Option<&'a str>,
    pub keep_alive: Option<&'a str>,
    pub log_dir: Option<&'a PathBuf>,
    pub notify: Option<&'a NotifySettings>,
}

impl JobKeys<'_> {
    /// The job settings, `log_dir` relative to `base`, the config's directory.
    pub fn validate(self, base: &Path) -> Result<JobSettings, Invalid> {
        let schedule = match self.schedule {
            Some(spec) => spec.parse().map_err(|m| Invalid::at("schedule", m))?,
            None => Schedule::Manual,
        };
        let timezone = timezone(self.timezone).map_err(|m| Invalid::at("timezone", m))?;
        let keep_job_history_days = match self.keep_job_history_days {
            Some(0) => {
                return Err(Invalid::at(
                    "keep_job_history_days",
                    "keep at least 1 day of job history",
                ));
            }
            Some(days) => days,
            None => 60,
        };
        let time_limit = self
            .time_limit
            .map(|t| positive_duration(t).map_err(|m| Invalid::at("time_limit", m)))
            .transpose()?;
        let keep_alive = match self.keep_alive {
            Some(t) => positive_duration(t).map_err(|m| Invalid::at("keep_alive", m))?,
            None => DEFAULT_KEEP_ALIVE,
        };
        let notify = self
            .notify
            .map(|n| n.validate().map_err(|e| e.under("notify")))
            .transpose()?;
        Ok(JobSettings {
            schedule,
            timezone,
            keep_job_history_days,
            time_limit,
            keep_alive,
            log_dir: self.log_dir.map(|d| resolve(base, d)),
            notify,
        })
    }
}

/// Gives each raw table with the job-setting keys a `job()` view of them as [`JobKeys`]: the
/// tables deny unknown keys, which serde's `flatten` cannot share.
macro_rules! job_keys {
    ($($table:ty),*) => {$(
        impl $table {
            fn job(&self) -> $crate::schedule::JobKeys<'_> {
                $crate::schedule::JobKeys {
                    schedule: self.schedule.as_deref(),
                    timezone: self.timezone.as_deref(),
                    keep_job_history_days: self.keep_job_history_days,
                    time_limit: self.time_limit.as_deref(),
                    keep_alive: self.keep_alive.as_deref(),
                    log_dir: self.log_dir.as_ref(),
                    notify: self.notify.as_ref(),
                }
            }
        }
    )*};
}
pub(crate) use job_keys;

/// The system's timezone: `TZ`, else `/etc/timezone`, else the `/etc/localtime` link; UTC if
/// none names a known zone.
fn system_timezone() -> Tz {
    let from_env = std::env::var("TZ").ok();
    let from_file = std::fs::read_to_string("/etc/timezone").ok();
    let from_link = std::fs::read_link("/etc/localtime").ok().and_then(|p| {
        let s = p.to_string_lossy().into_owned();
        s.split_once("zoneinfo/").map(|(_, z)| z.to_owned())
    });
    [from_env, from_file, from_link]
        .into_iter()
        .flatten()
        .find_map(|n| n.trim().trim_start_matches(':').parse::<Tz>().ok())
        .unwrap_or(Tz::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn next(spec: &str, after: &str, tz: &str) -> String {
        let s: Schedule = spec.parse().unwrap();
        s.next_after(utc(after), tz.parse().unwrap())
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn every_kind_parses_and_runs_in_its_timezone() {
        assert_eq!("manual".parse::<Schedule>().unwrap(), Schedule::Manual);
        assert_eq!(
            next("hourly at :15", "2026-03-02T10:20:00Z", "UTC"),
            "2026-03-02T11:15:00+00:00"
        );
        assert_eq!(
            next("daily at 02:30", "2026-03-02T10:00:00Z", "Europe/London"),
            "2026-03-03T02:30:00+00:00"
        );
        assert_eq!(
            next("daily at 02:30", "2026-07-02T10:00:00Z", "Europe/London"),
            "2026-07-03T01:30:00+00:00",
            "02:30 BST is 01:30 UTC"
        );
        assert_eq!(
            next(
                "weekly on mon at 06:00",
                "2026-03-04T00:00:00Z",
                "America/New_York"
            ),
            "2026-03-09T10:00:00+00:00"
        );
        assert_eq!(
            next("monthly on 31 at 00:00", "2026-04-01T00:00:00Z", "UTC"),
            "2026-05-31T00:00:00+00:00",
            "April has no 31st"
        );
        assert_eq!(
            next("cron */20 9-17 * * 1-5", "2026-03-06T17:45:00Z", "UTC"),
            "2026-03-09T09:00:00+00:00",
            "Friday evening to Monday morning"
        );
    }

    #[test]
    fn a_time_skipped_by_spring_forward_runs_once_right_after_the_gap() {
        // 2026-03-29: Europe/London jumps from 01:00 GMT to 02:00 BST; 01:30 does not exist.
        assert_eq!(
            next("daily at 01:30", "2026-03-28T12:00:00Z", "Europe/London"),
            "2026-03-29T01:00:00+00:00",
            "02:00 BST, the first instant after the gap"
        );
        assert_eq!(
            next("daily at 01:30", "2026-03-29T01:00:00Z", "Europe/London"),
            "2026-03-30T00:30:00+00:00",
            "and not again that day"
        );
    }

    #[test]
    fn a_time_repeated_by_fall_back_runs_once() {
        // 2026-10-25: Europe/London goes from 02:00 BST back to 01:00 GMT; 01:30 happens twice.
        let first = next("daily at 01:30", "2026-10-24T12:00:00Z", "Europe/London");
        assert_eq!(first, "2026-10-25T00:30:00+00:00", "01:30 BST");
        assert_eq!(
            next("daily at 01:30", &first, "Europe/London"),
            "2026-10-26T01:30:00+00:00",
            "not 01:30 GMT the same night"
        );
    }

    #[test]
    fn bad_schedules_and_timezones_say_what_to_write() {
        for (bad, hint) in [
            ("daily at 25:00", "HH:MM"),
            ("daily at 2:3", "HH:MM"),
            ("hourly at 15", ":MM"),
            ("weekly on funday at 01:00", "mon, tue"),
            ("monthly on 32 at 01:00", "1..31"),
            ("cron * * *", "5-field"),
            ("cron 61 * * * *", "not a valid cron expression"),
            ("every day", "not a schedule"),
        ] {
            let err = bad.parse::<Schedule>().unwrap_err();
            assert!(err.contains(hint), "{bad}: {err}");
        }
        assert!(timezone(Some("Mars/Olympus")).unwrap_err().contains("IANA"));
        assert_eq!(timezone(Some("Asia/Tokyo")).unwrap(), Tz::Asia__Tokyo);
    }
}
