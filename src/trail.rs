//! CloudTrail: the multi-region trail the procedure asks for. `TrailMode` arrives with its own
//! release; until then the resource behaves as `TrailMode: Off` and makes no CloudTrail call.

/// The trail the connector reads, as reported in `Data`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrailState {
    pub arn: Option<String>,
    pub created: bool,
}

impl TrailState {
    /// No trail managed or reused.
    pub fn off() -> TrailState {
        TrailState::default()
    }
}
