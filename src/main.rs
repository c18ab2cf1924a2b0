//! The Lambda entry point: builds the handler once, then serves invocations.

// The deadline guard turns a panic into a FAILED answer; with `panic = "abort"` a panic would
// kill the process and leave CloudFormation waiting for its timeout. cargo-lambda's release
// build sets abort unless told otherwise (see README, "Deploying").
#[cfg(not(panic = "unwind"))]
compile_error!("build with panic = \"unwind\": the deadline guard must be able to answer a panic");

use cloud_app_security_connector::cfn::delivery::Delivery;
use cloud_app_security_connector::handler::{Handler, Invoked, Services, Settings};
use cloud_app_security_connector::{aws, logging};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

// One thread: a request is one task whose AWS calls overlap as futures, not threads, so worker
// threads add nothing but their start-up, stacks and malloc arenas.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logging::init();
    let (settings, read) = Settings::from_env();
    let services = match read {
        Ok(()) => Services::new(&aws::load_config().await).map(|s| s.reporting_to(settings.status_bus.clone())),
        Err(e) => Err(e),
    };
    if let Err(e) = &services {
        tracing::error!(error = %e, "start-up failed; every request will be answered FAILED");
    }
    let handler = Handler {
        delivery: Delivery::new()?,
        settings,
        services,
    };
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let invoked = Invoked {
            deadline: event.context.deadline(),
            function_arn: Some(event.context.invoked_function_arn.clone()),
        };
        handler.handle(event.payload, &invoked).await
    }))
    .await
}
