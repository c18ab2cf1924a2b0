//! Which step a request is in, so that a deadline can say where the time went.

use std::sync::{Arc, Mutex, PoisonError};

/// A shared, cheap-to-clone marker of the current step.
#[derive(Clone)]
pub struct Progress(Arc<Mutex<&'static str>>);

impl Progress {
    /// Starts at `first`.
    pub fn new(first: &'static str) -> Progress {
        Progress(Arc::new(Mutex::new(first)))
    }

    /// Moves to `step`.
    pub fn set(&self, step: &'static str) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = step;
        tracing::debug!(step, "step");
    }

    /// The step now.
    pub fn current(&self) -> &'static str {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
