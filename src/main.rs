//! The Lambda entry point: builds the handler once, then serves invocations.
#![recursion_limit = "256"]

use cloud_app_security_connector::cfn::responder::Responder;
use cloud_app_security_connector::handler::{Handler, Services};
use cloud_app_security_connector::logging;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    logging::init();
    let services = Services::from_env().await;
    if let Err(e) = &services {
        tracing::error!(error = %e, "start-up failed; every request will be answered FAILED");
    }
    let handler = Handler {
        responder: Responder::new()?,
        services,
    };
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handler.handle(event.payload, event.context.deadline()).await
    }))
    .await
}
