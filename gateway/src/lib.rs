//! Sluice gateway: the data plane in front of every model provider.

pub mod api;
pub mod app;
pub mod auth;
pub mod body;
pub mod cache;
pub mod config;
pub mod error;
pub mod gateway;
pub mod guardrails;
pub mod handlers;
pub mod local;
pub mod metering;
pub mod metrics;
pub mod pii;
pub mod policy_metrics;
pub mod providers;
pub mod reliability;
pub mod routing;
pub mod semantic;
pub mod server;
pub mod shadow;
pub mod telemetry;
pub mod upstream;

pub use gateway::{ConfigSource, Gateway, GatewayOptions, StartError};
