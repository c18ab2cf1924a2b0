//! Failure injection and interleaving for the fakes: every fake call goes through
//! [`Faults::call`], which counts it, may fail it as told, and yields to the scheduler a
//! seeded-random number of times so that concurrent invocations interleave call by call.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::ports::{CallError, ErrorKind};

/// What to fail, and how calls interleave.
pub struct Faults {
    state: Mutex<State>,
}

struct State {
    /// Calls made so far, all fakes together.
    calls: usize,
    /// Every call, in order: `service:Operation`.
    log: Vec<&'static str>,
    /// Fail the call with this global index; `true`: after its effect took place (a timeout
    /// on the answer).
    at: Option<(usize, bool)>,
    /// Fail the next call of an operation, with this kind.
    next: BTreeMap<&'static str, ErrorKind>,
    /// Drives the yields.
    rng: StdRng,
    /// At most this many yields per call (0: calls never interleave).
    max_yields: u32,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults::seeded(0, 0)
    }
}

impl Faults {
    /// Interleaving drawn from `seed`, with up to `max_yields` yields per call.
    pub fn seeded(seed: u64, max_yields: u32) -> Faults {
        Faults {
            state: Mutex::new(State {
                calls: 0,
                log: Vec::new(),
                at: None,
                next: BTreeMap::new(),
                rng: StdRng::seed_from_u64(seed),
                max_yields,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fails the call with global index `index` (counting from 0) as a transient error, before
    /// its effect or, with `after`, once its effect took place.
    pub fn fail_call(&self, index: usize, after: bool) {
        self.lock().at = Some((index, after));
    }

    /// Fails the next call of `operation` with `kind`.
    pub fn fail_next(&self, operation: &'static str, kind: ErrorKind) {
        self.lock().next.insert(operation, kind);
    }

    /// How many calls were made.
    pub fn calls(&self) -> usize {
        self.lock().calls
    }

    /// Every call so far, in order.
    pub fn log(&self) -> Vec<&'static str> {
        self.lock().log.clone()
    }

    /// Counts a call of `operation` and yields. `Err`: the call fails before its effect;
    /// `Ok(Some(e))`: the fake applies the effect, then answers `e`.
    pub async fn call(&self, operation: &'static str) -> Result<Option<CallError>, CallError> {
        let (yields, failure) = {
            let mut s = self.lock();
            let index = s.calls;
            s.calls += 1;
            s.log.push(operation);
            let failure = match s.at {
                Some((at, after)) if at == index => Some((ErrorKind::Transient, after)),
                _ => s.next.remove(operation).map(|kind| (kind, false)),
            };
            let max = s.max_yields;
            (if max == 0 { 0 } else { s.rng.random_range(0..=max) }, failure)
        };
        for _ in 0..yields {
            tokio::task::yield_now().await;
        }
        let error = |kind| CallError::new(operation, kind, Some("Injected"), "injected failure");
        match failure {
            Some((kind, false)) => Err(error(kind)),
            Some((kind, true)) => Ok(Some(error(kind))),
            None => Ok(None),
        }
    }
}

/// The answer of a fake call whose effect took place: `value`, unless told to fail after.
pub fn answer<T>(after: Option<CallError>, value: T) -> Result<T, CallError> {
    match after {
        Some(e) => Err(e),
        None => Ok(value),
    }
}
