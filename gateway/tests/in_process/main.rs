//! In-process gateway tests: scripted upstreams that record what they receive, a real gateway on port 0,
//! real HTTP between them.

// clippy's `allow-unwrap-in-tests` covers `#[test]` functions but not the harness helpers they share; a
// failed setup step there should fail the test just as loudly.
#![expect(
    clippy::unwrap_used,
    reason = "test harness helpers: a failed setup step fails the test"
)]

mod auth;
mod errors;
mod reload;
mod routing;
mod server;
mod streaming;
mod support;
