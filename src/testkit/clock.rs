//! A clock the tests move by hand.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::ports::Clock;

/// Starts at a fixed instant; moves only when told.
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl Default for ManualClock {
    fn default() -> ManualClock {
        ManualClock(Arc::new(Mutex::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        )))
    }
}

impl ManualClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}
