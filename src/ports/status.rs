//! The organization's status bus (optional): where each connector reports its state.

use std::future::Future;

use super::CallError;
use crate::status::Report;

/// Sends reports. A report never fails or delays the request it reports on: the caller bounds
/// it in time and only logs its failure.
pub trait StatusBus: Sync {
    /// Sends one report. `Ok` when the bus took it, or when no bus is configured; an entry the
    /// bus refused (`PutEvents` answers 200 with `FailedEntryCount`) is an error.
    fn send(&self, report: &Report) -> impl Future<Output = Result<(), CallError>> + Send;
}
