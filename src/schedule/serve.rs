//! The scheduler behind `custodian serve`: which policies are due, which wait for a free slot,
//! and which occurrences are skipped because the policy's previous run is still going. It only
//! decides; the CLI starts and watches the run processes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{JobSettings, Schedule};

/// An occurrence of a policy's schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub policy: String,
    /// The instant it was due.
    pub at: DateTime<Utc>,
}

#[derive(Debug)]
struct Entry {
    schedule: Schedule,
    tz: Tz,
    next: Option<DateTime<Utc>>,
}

/// The schedules of every enabled policy, the occurrences waiting for a slot, and the policies
/// running now.
#[derive(Debug, Default)]
pub struct Scheduler {
    entries: BTreeMap<String, Entry>,
    queue: VecDeque<Due>,
    running: BTreeSet<String>,
}

impl Scheduler {
    /// Schedules each of `jobs` (named job settings) from `now`.
    pub fn new<'a>(
        jobs: impl IntoIterator<Item = (&'a str, &'a JobSettings)>,
        now: DateTime<Utc>,
    ) -> Scheduler {
        let mut s = Scheduler::default();
        s.reload(jobs, now);
        s
    }

    /// Takes the schedules of a reloaded config's `jobs`. Runs going on are unaffected;
    /// waiting occurrences of policies no longer scheduled are dropped.
    pub fn reload<'a>(
        &mut self,
        jobs: impl IntoIterator<Item = (&'a str, &'a JobSettings)>,
        now: DateTime<Utc>,
    ) {
        self.entries = jobs
            .into_iter()
            .map(|(name, job)| {
                let next = job.schedule.next_after(now, job.timezone);
                (
                    name.to_owned(),
                    Entry {
                        schedule: job.schedule.clone(),
                        tz: job.timezone,
                        next,
                    },
                )
            })
            .collect();
        let entries = &self.entries;
        self.queue.retain(|d| entries.contains_key(&d.policy));
    }

    /// How many policies are scheduled.
    pub fn scheduled(&self) -> usize {
        self.entries.len()
    }

    /// Queues every occurrence due at `now` and moves each policy to its next one. Returns the
    /// occurrences skipped because the policy is still running or already waiting.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Due> {
        let mut skipped = Vec::new();
        for (name, e) in &mut self.entries {
            let Some(at) = e.next.filter(|t| *t <= now) else {
                continue;
            };
            // Occurrences missed while the machine slept or the clock jumped run once.
            e.next = e.schedule.next_after(now, e.tz);
            let due = Due {
                policy: name.clone(),
                at,
            };
            if self.running.contains(name) || self.queue.iter().any(|d| d.policy == *name) {
                skipped.push(due);
            } else {
                self.queue.push_back(due);
            }
        }
        skipped
    }

    /// The next waiting occurrence to start, if fewer than `slots` runs are going; its policy
    /// counts as running from now.
    pub fn start_next(&mut self, slots: usize) -> Option<Due> {
        if self.running.len() >= slots {
            return None;
        }
        let due = self.queue.pop_front()?;
        self.running.insert(due.policy.clone());
        Some(due)
    }

    /// Queues a run of `policy` asked for now (on demand), unless one is running or waiting
    /// already: one run per policy at a time. Returns whether it was queued.
    pub fn queue_now(&mut self, due: Due) -> bool {
        if self.running.contains(&due.policy) || self.is_waiting(&due.policy) {
            return false;
        }
        self.queue.push_back(due);
        true
    }

    /// Whether an occurrence of the policy waits for a slot.
    pub fn is_waiting(&self, policy: &str) -> bool {
        self.queue.iter().any(|d| d.policy == policy)
    }

    /// Marks a policy's run as ended.
    pub fn finished(&mut self, policy: &str) {
        self.running.remove(policy);
    }

    /// Whether a run of the policy is going.
    pub fn is_running(&self, policy: &str) -> bool {
        self.running.contains(policy)
    }

    /// Drops every waiting occurrence (shutting down).
    pub fn clear_queue(&mut self) -> usize {
        std::mem::take(&mut self.queue).len()
    }

    /// The earliest occurrence not yet started: the first waiting for a slot, else the next
    /// due. Once it is past, the scheduler is that far behind.
    pub fn earliest_pending(&self) -> Option<DateTime<Utc>> {
        let waiting = self.queue.iter().map(|d| d.at).min();
        let next = self.entries.values().filter_map(|e| e.next).min();
        waiting.into_iter().chain(next).min()
    }

    /// The earliest next occurrence.
    pub fn next_wake(&self) -> Option<(&str, DateTime<Utc>)> {
        self.entries
            .iter()
            .filter_map(|(n, e)| e.next.map(|t| (n.as_str(), t)))
            .min_by_key(|(_, t)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::JobKeys;
    use std::path::Path;

    /// Job `a` due hourly at :00 and `b` at :30 (UTC), as a config has them, each optionally.
    fn jobs(a: bool, b: bool) -> Vec<(&'static str, JobSettings)> {
        let job = |schedule| {
            let keys = JobKeys {
                schedule: Some(schedule),
                timezone: Some("UTC"),
                ..JobKeys::default()
            };
            keys.validate(Path::new("/etc")).unwrap()
        };
        [("a", a, "hourly at :00"), ("b", b, "hourly at :30")]
            .into_iter()
            .filter(|(_, on, _)| *on)
            .map(|(name, _, schedule)| (name, job(schedule)))
            .collect()
    }

    fn scheduler(jobs: &[(&'static str, JobSettings)], now: DateTime<Utc>) -> Scheduler {
        Scheduler::new(jobs.iter().map(|(n, j)| (*n, j)), now)
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_next_wake_is_the_earliest_next_occurrence() {
        let s = scheduler(&jobs(true, true), at("2026-05-01T10:10:00Z"));
        assert_eq!(s.scheduled(), 2);
        assert_eq!(s.next_wake(), Some(("b", at("2026-05-01T10:30:00Z"))));
    }

    #[test]
    fn a_run_on_demand_waits_its_turn_and_never_doubles_a_policy() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let due = |p: &str| Due {
            policy: p.into(),
            at: t0,
        };
        let mut s = Scheduler::default();
        assert!(s.queue_now(due("a")));
        assert!(!s.queue_now(due("a")), "a second request while one waits");
        assert!(s.is_waiting("a"));
        assert_eq!(s.start_next(1), Some(due("a")));
        assert!(!s.queue_now(due("a")), "a request while it runs");
        assert!(s.queue_now(due("b")));
        assert_eq!(s.start_next(1), None, "one slot, taken by a");
        s.finished("a");
        assert_eq!(s.start_next(1), Some(due("b")));
        assert!(s.queue_now(due("a")));
    }

    #[test]
    fn a_policy_still_running_skips_its_next_occurrence() {
        let mut s = scheduler(&jobs(true, true), at("2026-05-01T10:50:00Z"));
        assert!(s.tick(at("2026-05-01T10:59:59Z")).is_empty());
        assert_eq!(s.start_next(4), None);
        assert!(s.tick(at("2026-05-01T11:00:00Z")).is_empty());
        let first = s.start_next(4).unwrap();
        assert_eq!(first.policy, "a");
        assert_eq!(first.at, at("2026-05-01T11:00:00Z"));
        assert!(s.is_running("a"));
        // Still running an hour later: that occurrence is skipped, not started twice.
        s.tick(at("2026-05-01T11:30:00Z"));
        assert_eq!(s.start_next(4).unwrap().policy, "b");
        let skipped = s.tick(at("2026-05-01T12:00:01Z"));
        assert_eq!(
            skipped,
            vec![Due {
                policy: "a".into(),
                at: at("2026-05-01T12:00:00Z")
            }]
        );
        assert_eq!(s.start_next(4), None);
        s.finished("a");
        s.tick(at("2026-05-01T13:00:00Z"));
        assert_eq!(s.start_next(4).unwrap().at, at("2026-05-01T13:00:00Z"));
    }

    #[test]
    fn occurrences_wait_for_a_free_slot_and_missed_ones_run_once() {
        let mut s = scheduler(&jobs(true, true), at("2026-05-01T10:00:30Z"));
        // Asleep for three hours: each policy runs once, not once per missed occurrence.
        assert!(s.tick(at("2026-05-01T13:45:00Z")).is_empty());
        let first = s.start_next(1).unwrap();
        assert_eq!(s.start_next(1), None);
        s.finished(&first.policy);
        let second = s.start_next(1).unwrap();
        assert_ne!(first.policy, second.policy);
        assert_eq!(s.next_wake().unwrap().1, at("2026-05-01T14:00:00Z"));
    }

    #[test]
    fn the_earliest_pending_occurrence_is_one_waiting_for_a_slot_else_the_next_due() {
        let mut s = scheduler(&jobs(true, true), at("2026-05-01T10:10:00Z"));
        assert_eq!(s.earliest_pending(), Some(at("2026-05-01T10:30:00Z")));
        // Both due; one slot: `b` (due at :30) starts, `a` (due at 11:00) waits.
        s.tick(at("2026-05-01T10:30:00Z"));
        assert_eq!(s.start_next(1).unwrap().policy, "b");
        s.tick(at("2026-05-01T11:00:00Z"));
        assert_eq!(s.start_next(1), None);
        assert_eq!(s.earliest_pending(), Some(at("2026-05-01T11:00:00Z")));
        s.finished("b");
        assert_eq!(s.start_next(1).unwrap().policy, "a");
        assert_eq!(s.earliest_pending(), Some(at("2026-05-01T11:30:00Z")));
        assert_eq!(
            scheduler(&jobs(false, false), at("2026-05-01T10:10:00Z")).earliest_pending(),
            None
        );
    }

    #[test]
    fn reload_drops_waiting_occurrences_of_removed_policies() {
        let mut s = scheduler(&jobs(true, true), at("2026-05-01T10:00:30Z"));
        s.tick(at("2026-05-01T11:45:00Z"));
        let fewer = jobs(true, false);
        s.reload(
            fewer.iter().map(|(n, j)| (*n, j)),
            at("2026-05-01T11:45:01Z"),
        );
        assert_eq!(s.scheduled(), 1);
        assert_eq!(s.start_next(4).unwrap().policy, "a");
        assert_eq!(s.start_next(4), None);
    }
}
