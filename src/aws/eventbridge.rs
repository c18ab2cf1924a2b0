//! EventBridge adapter: implements [`StatusBus`] with the AWS SDK, sending each report as one
//! `PutEvents` entry to the organization's bus (`StatusBusArn`).

use std::sync::OnceLock;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;

use super::call_error;
use crate::ports::{CallError, ErrorKind, StatusBus};
use crate::status::{Report, DETAIL_TYPE, SOURCE};

/// The bus, when one is configured; its client is built on first use (most connectors report
/// nowhere, and a client costs its construction and a TLS connector).
pub struct EventBridgeAdapter {
    config: aws_config::SdkConfig,
    client: OnceLock<Client>,
    bus: Option<String>,
}

impl EventBridgeAdapter {
    /// Reports to `bus` (an event bus ARN), or nowhere.
    pub fn new(config: &aws_config::SdkConfig, bus: Option<String>) -> EventBridgeAdapter {
        EventBridgeAdapter {
            config: config.clone(),
            client: OnceLock::new(),
            bus,
        }
    }
}

/// A client in the bus's region (its ARN's fourth field): the organization's bus may live in
/// another region than the connector, and PutEvents goes to the bus's regional endpoint.
fn client_for(config: &aws_config::SdkConfig, bus: &str) -> Client {
    let region = bus.split(':').nth(3).filter(|r| !r.is_empty());
    let mut builder = aws_sdk_eventbridge::config::Builder::from(config);
    if let Some(region) = region {
        builder = builder.region(aws_sdk_eventbridge::config::Region::new(region.to_owned()));
    }
    Client::from_conf(builder.build())
}

impl StatusBus for EventBridgeAdapter {
    async fn send(&self, report: &Report) -> Result<(), CallError> {
        let Some(bus) = &self.bus else { return Ok(()) };
        let detail = serde_json::to_string(report)
            .map_err(|e| CallError::new("events:PutEvents", ErrorKind::Other, None, e.to_string()))?;
        let entry = PutEventsRequestEntry::builder()
            .source(SOURCE)
            .detail_type(DETAIL_TYPE)
            .detail(detail)
            .event_bus_name(bus)
            .build();
        let client = self.client.get_or_init(|| client_for(&self.config, bus));
        let out = client.put_events().entries(entry).send().await;
        let out = out.map_err(|e| call_error("events:PutEvents", e, |_| None))?;
        // PutEvents answers 200 even when it refused the entry.
        match out.entries().first().filter(|_| out.failed_entry_count() > 0) {
            Some(refused) => Err(CallError::new(
                "events:PutEvents",
                ErrorKind::Other,
                refused.error_code(),
                refused.error_message().unwrap_or("the bus refused the entry"),
            )),
            None => Ok(()),
        }
    }
}
