//! Talking to providers: the pooled HTTP/1.1 + HTTP/2 client over rustls, and the per-request attempt loop.

mod client;
pub mod dispatch;
pub mod metrics;
pub mod policy;
pub mod stream;

pub use client::{HttpClient, Transport, TransportError, TransportSettings};
