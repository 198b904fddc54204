//! The request log: every request the mock received, as it arrived, with what the mock answered.

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::Value;

use super::reply::Usage;
use super::route::{Endpoint, Provider, Route};

/// How the mock answered a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status (a stream that was cut later still counts as its 200).
    Status(u16),
    /// The connection was reset before any response.
    Reset,
    /// No answer was ever sent.
    Hang,
}

/// One received request.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Order of arrival, from 1.
    pub seq: u64,
    /// The provider operation the path resolved to (`None` for unknown paths).
    pub route: Option<Route>,
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The body parsed as JSON (`Null` when empty or not JSON).
    pub body: Value,
    pub raw_body: Bytes,
    pub outcome: Outcome,
    /// The usage the mock reported in its answer, for checking the gateway's accounting.
    pub usage: Option<Usage>,
}

impl RecordedRequest {
    pub fn provider(&self) -> Option<Provider> {
        self.route.as_ref().map(|route| route.provider)
    }

    pub fn endpoint(&self) -> Option<Endpoint> {
        self.route.as_ref().map(|route| route.endpoint)
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// A query parameter's raw value.
    pub fn query_param(&self, name: &str) -> Option<String> {
        super::wire::query_param(self.query.as_deref(), name)
    }
}
