//! Backs the CloudFormation custom resource `Custom::CloudAppSecurityConnector`: connects an AWS
//! account to Microsoft Defender for Cloud Apps (formerly Cloud App Security).

pub mod aws;
pub mod cfn;
pub mod cloud_app_security;
pub mod handler;
pub mod identity;
pub mod key_material;
pub mod logging;
pub mod progress;
pub mod properties;
pub mod provision;
pub mod resource;
