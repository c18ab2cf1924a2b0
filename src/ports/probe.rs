//! Proving a key works the way Cloud App Security will use it ("Test API", automated).

use std::collections::BTreeSet;
use std::future::Future;

use crate::key_material::SecretDocument;
use crate::properties::Connection;

/// Why a key could not make the connector's reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// AWS does not know the key yet: IAM is eventually consistent, so this is retried.
    #[error("the key is not valid yet ({0})")]
    NotYetValid(String),
    /// The key authenticates but a read is refused (a service control policy, a boundary).
    #[error("{0}")]
    Denied(String),
    /// Anything else (a timeout, an unreachable endpoint).
    #[error("{0}")]
    Failed(String),
}

/// Signs requests with a stored key.
pub trait KeyProbe: Sync {
    /// Makes, with the document's key, one read per kind the connector makes for
    /// `connections`; `Ok` when every one is allowed.
    fn probe(
        &self,
        key: &SecretDocument,
        connections: &BTreeSet<Connection>,
    ) -> impl Future<Output = Result<(), ProbeError>> + Send;
    /// The ARN of the principal the document's key signs as (`sts:GetCallerIdentity`, which no
    /// policy can deny): proof that whoever wrote the document held the key's secret half.
    fn identity(&self, key: &SecretDocument) -> impl Future<Output = Result<String, ProbeError>> + Send;
}
