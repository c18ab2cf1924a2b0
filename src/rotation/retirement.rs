//! Retiring the previous key after a rotation in portal mode. A person must paste the new key,
//! so the previous one stays active until Cloud App Security is seen using the new one, or the
//! grace period ends. Retiring means deactivating (an administrator can reactivate the key); the
//! key is deleted after a further week inactive.
//!
//! IAM keeps only each key's most recent use, and the function's own verification uses the new
//! key too: "seen" means the new key was used more than an hour after the function's own last
//! use of it (recorded as `selfUseUntil`), **and** the previous key has not been used for a day.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::key_material::AwaitingPaste;
use crate::ports::AccessKeyInfo;

/// How long after the function's own last use a use of the new key counts as someone else's.
const AFTER_SELF_USE: Duration = Duration::from_secs(60 * 60);
/// How long the previous key must have been idle for the switch to count as seen.
const PREVIOUS_IDLE: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a retired key stays, deactivated, before it is deleted.
pub(super) const DEACTIVATED_FOR: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// A day.
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// What IAM says about the two keys.
#[derive(Clone, Debug, Default)]
pub(super) struct Observed {
    /// The previous key, if it still exists.
    pub previous: Option<AccessKeyInfo>,
    /// The previous key's last use.
    pub previous_last_used: Option<SystemTime>,
    /// The new key's last use.
    pub new_last_used: Option<SystemTime>,
}

/// What to do about the previous key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Retirement {
    /// It is gone (a person deleted it): forget it.
    Forget,
    /// Still waiting for the paste.
    Wait,
    /// An administrator reactivated it after it was retired: left active until the switch is
    /// seen (the grace period is not applied twice), and counted as waiting meanwhile, so the
    /// alarm stays on and no new rotation starts.
    Reactivated,
    /// Deactivate it: the switch was seen, or (`seen: false`) the grace period ended first.
    Deactivate {
        /// Whether Cloud App Security was seen using the new key.
        seen: bool,
    },
    /// Someone else deactivated it: note when, so that it is deleted a week later.
    NoteDeactivated,
    /// Retired, waiting for its week to pass.
    Retired,
    /// Retired a week ago: delete it.
    Delete,
}

impl Retirement {
    /// Whether a paste is still awaited.
    pub(super) fn pending(self) -> bool {
        matches!(self, Retirement::Wait | Retirement::Reactivated)
    }
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// Whether a key's last use, `used`, is someone else's: more than an hour after the function's
/// own use of it ended (`own_use_ends`, seconds since the epoch).
pub(super) fn used_by_others(used: Option<SystemTime>, own_use_ends: u64) -> bool {
    used.is_some_and(|t| t > at(own_use_ends) + AFTER_SELF_USE)
}

/// Decides what becomes of the key `waiting` names. `self_use_until` is the new key's record of
/// the function's own use; `grace_days` is `RotationGraceDays`.
pub(super) fn decide(
    waiting: &AwaitingPaste,
    self_use_until: Option<u64>,
    observed: &Observed,
    grace_days: u32,
    now: SystemTime,
) -> Retirement {
    let Some(key) = &observed.previous else {
        return Retirement::Forget;
    };
    match (key.active, waiting.deactivated_at) {
        (false, None) => return Retirement::NoteDeactivated,
        (false, Some(when)) if at(when) + DEACTIVATED_FOR <= now => return Retirement::Delete,
        (false, Some(_)) => return Retirement::Retired,
        (true, _) => {}
    }
    let new_used_by_others = used_by_others(observed.new_last_used, self_use_until.unwrap_or(waiting.since));
    let previous_idle = observed.previous_last_used.is_none_or(|t| t + PREVIOUS_IDLE <= now);
    if new_used_by_others && previous_idle {
        return Retirement::Deactivate { seen: true };
    }
    if waiting.deactivated_at.is_some() {
        return Retirement::Reactivated;
    }
    if at(waiting.since) + DAY * grace_days <= now {
        return Retirement::Deactivate { seen: false };
    }
    Retirement::Wait
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 2_000_000_000;
    const HOUR: u64 = 3600;

    fn waiting(deactivated_at: Option<u64>) -> AwaitingPaste {
        AwaitingPaste {
            access_key_id: "AKIAOLD".into(),
            since: T0,
            deactivated_at,
        }
    }

    fn key(active: bool) -> Option<AccessKeyInfo> {
        Some(AccessKeyInfo {
            access_key_id: "AKIAOLD".into(),
            active,
            created: at(T0 - 100 * 24 * HOUR),
        })
    }

    fn observed(active: bool, previous_used: Option<u64>, new_used: Option<u64>) -> Observed {
        Observed {
            previous: key(active),
            previous_last_used: previous_used.map(at),
            new_last_used: new_used.map(at),
        }
    }

    #[test]
    fn the_switch_counts_as_seen_only_after_the_functions_own_use_and_with_the_previous_key_idle_a_day() {
        let self_use = Some(T0 + 16 * 60);
        let now = at(T0 + 3 * 24 * HOUR);
        let decide_with = |o: &Observed| decide(&waiting(None), self_use, o, 7, now);
        // Only the function's own verification used the new key (within its hour).
        let own = observed(true, Some(T0 - HOUR), Some(T0 + 20 * 60));
        assert_eq!(decide_with(&own), Retirement::Wait);
        // Someone used the new key later, and the previous key has been idle for two days.
        let switched = observed(true, Some(T0 + HOUR), Some(T0 + 2 * 24 * HOUR));
        assert_eq!(decide_with(&switched), Retirement::Deactivate { seen: true });
        // Both keys in use (a second reader, or the paste only half done): keep waiting.
        let both = observed(true, Some(T0 + 3 * 24 * HOUR - HOUR), Some(T0 + 2 * 24 * HOUR));
        assert_eq!(decide_with(&both), Retirement::Wait);
        // Never used at all: idle, but the new key was not seen either.
        assert_eq!(decide_with(&observed(true, None, None)), Retirement::Wait);
    }

    #[test]
    fn the_grace_period_ends_the_wait_without_the_switch_seen() {
        let o = observed(true, Some(T0 + 6 * 24 * HOUR), None);
        let before = at(T0 + 7 * 24 * HOUR - 1);
        let after = at(T0 + 7 * 24 * HOUR);
        assert_eq!(decide(&waiting(None), None, &o, 7, before), Retirement::Wait);
        assert_eq!(
            decide(&waiting(None), None, &o, 7, after),
            Retirement::Deactivate { seen: false }
        );
        assert_eq!(
            decide(&waiting(None), None, &o, 0, at(T0)),
            Retirement::Deactivate { seen: false },
            "a grace of 0 days retires at the first check"
        );
    }

    #[test]
    fn a_retired_key_is_deleted_a_week_after_it_was_deactivated_and_an_administrators_choices_stand() {
        let now = at(T0 + 20 * 24 * HOUR);
        let deactivated = |days_ago: u64| Some(T0 + 20 * 24 * HOUR - days_ago * 24 * HOUR);
        let inactive = observed(false, None, None);
        assert_eq!(
            decide(&waiting(deactivated(6)), None, &inactive, 7, now),
            Retirement::Retired
        );
        assert_eq!(
            decide(&waiting(deactivated(7)), None, &inactive, 7, now),
            Retirement::Delete
        );
        assert_eq!(
            decide(&waiting(None), None, &inactive, 7, now),
            Retirement::NoteDeactivated
        );
        let reactivated = observed(true, None, None);
        assert_eq!(
            decide(&waiting(deactivated(3)), None, &reactivated, 7, now),
            Retirement::Reactivated
        );
        // Once the switch is seen, a reactivated key is retired again.
        let switched = observed(true, Some(T0), Some(T0 + 19 * 24 * HOUR));
        assert_eq!(
            decide(&waiting(deactivated(3)), Some(T0), &switched, 7, now),
            Retirement::Deactivate { seen: true }
        );
        let gone = Observed::default();
        assert_eq!(decide(&waiting(None), None, &gone, 7, now), Retirement::Forget);
        assert!(Retirement::Reactivated.pending() && Retirement::Wait.pending() && !Retirement::Retired.pending());
    }
}
