//! The login throttle: failed logins counted per account name and per client address over a
//! window; past the limit a login is refused before its password is checked, with the time
//! until the oldest counted failure leaves the window. Kept in memory: a restart forgets it,
//! which costs an attacker a restart of the service they cannot cause.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a failed login counts.
pub(super) const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failures of one account name within the window before its logins are refused.
pub(super) const PER_ACCOUNT: usize = 5;
/// Failures from one client address within the window (it may try several names).
pub(super) const PER_ADDRESS: usize = 20;
/// Most names and addresses remembered; past this, the oldest failures are forgotten first.
const MAX_KEYS: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

/// Failed logins per account name and client address.
#[derive(Default)]
pub(super) struct LoginLimiter {
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// None if a login of `account` from `addr` may be tried now, else how long until one may.
    pub(super) fn refusal(&self, account: &str, addr: IpAddr, now: Instant) -> Option<Duration> {
        let mut failures = self.failures.lock().expect("login limiter lock");
        [
            (Key::Account(account.to_owned()), PER_ACCOUNT),
            (Key::Address(addr), PER_ADDRESS),
        ]
        .into_iter()
        .filter_map(|(key, limit)| {
            let times = failures.get_mut(&key)?;
            forget_old(times, now);
            (times.len() >= limit).then(|| WINDOW - now.duration_since(times[0]))
        })
        .max()
    }

    /// Counts a failed login of `account` from `addr`.
    pub(super) fn failed(&self, account: &str, addr: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().expect("login limiter lock");
        if failures.len() >= MAX_KEYS {
            failures.retain(|_, times| {
                forget_old(times, now);
                !times.is_empty()
            });
        }
        for key in [Key::Account(account.to_owned()), Key::Address(addr)] {
            if failures.len() < MAX_KEYS || failures.contains_key(&key) {
                failures.entry(key).or_default().push_back(now);
            }
        }
    }

    /// Forgets the failures of `account` once it logged in.
    pub(super) fn succeeded(&self, account: &str) {
        self.failures
            .lock()
            .expect("login limiter lock")
            .remove(&Key::Account(account.to_owned()));
    }
}

fn forget_old(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) >= WINDOW)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn an_account_is_refused_after_its_failures_until_the_window_passes() {
        let limiter = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..PER_ACCOUNT {
            assert_eq!(limiter.refusal("alice", HOME, t0), None, "attempt {i}");
            limiter.failed("alice", HOME, t0);
        }
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            limiter.refusal("alice", HOME, later),
            Some(WINDOW - Duration::from_secs(60))
        );
        // Another name from the same address is still allowed (up to the address's limit).
        assert_eq!(limiter.refusal("bob", HOME, later), None);
        assert_eq!(limiter.refusal("alice", HOME, t0 + WINDOW), None);
    }

    #[test]
    fn an_address_is_refused_after_failures_across_names() {
        let limiter = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..PER_ADDRESS {
            limiter.failed(&format!("user{i}"), HOME, t0);
        }
        assert!(limiter.refusal("fresh", HOME, t0).is_some());
        let elsewhere = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(limiter.refusal("fresh", elsewhere, t0), None);
    }

    #[test]
    fn a_login_clears_the_accounts_failures() {
        let limiter = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..PER_ACCOUNT {
            limiter.failed("alice", HOME, t0);
        }
        limiter.succeeded("alice");
        assert_eq!(limiter.refusal("alice", HOME, t0), None);
    }
}
