//! The CloudFormation custom-resource protocol: the request as it arrives, the answer we send.
//!
//! A request is read in two passes. First the [`Envelope`] — just enough to answer — so that
//! everything wrong after that point (an unknown `RequestType`, properties of the wrong shape)
//! can still be answered `FAILED`. Then the typed request, with `aws_lambda_events`' types over
//! our own property parser.

pub mod responder;
pub mod response;

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::properties::{Properties, PropertyErrors};

/// The presigned S3 URL CloudFormation waits on. It is a credential: no `Debug`, never logged.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct ResponseUrl(String);

impl ResponseUrl {
    pub fn new(url: String) -> ResponseUrl {
        ResponseUrl(url)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The fields needed to answer, read before anything else.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Envelope {
    #[serde(rename = "ResponseURL")]
    pub response_url: ResponseUrl,
    pub request_type: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    #[serde(default)]
    pub physical_resource_id: Option<String>,
}

/// Properties as parsed at the edge: a Delete must still be able to proceed (and succeed) when
/// they do not validate, so the outcome is kept rather than failing the whole request.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed(pub Result<Properties, PropertyErrors>);

impl<'de> Deserialize<'de> for Parsed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Parsed(match Option::<Value>::deserialize(deserializer)? {
            None | Some(Value::Null) => Properties::parse(&Map::new()),
            Some(Value::Object(map)) => Properties::parse(&map),
            Some(_) => Err(PropertyErrors(vec!["ResourceProperties: must be an object".to_owned()])),
        }))
    }
}

impl serde::Serialize for Parsed {
    // Required by the event type's bounds; requests are never serialised.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_none()
    }
}

/// The typed request.
pub type Request = CloudFormationCustomResourceRequest<Parsed, Parsed>;

pub const REQUEST_TYPES: [&str; 3] = ["Create", "Update", "Delete"];

/// The request's (new) properties, when they validate.
pub fn properties_of(request: &Request) -> Option<&Properties> {
    match request {
        Request::Create(r) => r.resource_properties.0.as_ref().ok(),
        Request::Update(r) => r.resource_properties.0.as_ref().ok(),
        Request::Delete(r) => r.resource_properties.0.as_ref().ok(),
        _ => None,
    }
}
