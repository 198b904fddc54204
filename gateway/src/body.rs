//! Response body type and body helpers: bounded request reads, JSON and SSE responses.

use std::convert::Infallible;

use bytes::Bytes;
use futures::Stream;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};

use crate::error::GatewayError;

/// Every response body the gateway sends: a buffer or a stream of frames.
pub type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).boxed_unsync()
}

/// A `200`/error response with a JSON body.
pub fn json(status: StatusCode, bytes: impl Into<Bytes>) -> Response<ResponseBody> {
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A plain-text response (admin endpoints).
pub fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ResponseBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A server-sent-events response streaming `frames`.
pub fn event_stream<S>(frames: S) -> Response<ResponseBody>
where
    S: Stream<Item = Result<hyper::body::Frame<Bytes>, Infallible>> + Send + 'static,
{
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies in front of the gateway not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Rejects a declared `Content-Length` above `limit` before reading anything.
pub fn check_declared_length(headers: &HeaderMap, limit: usize) -> Result<(), GatewayError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => Err(GatewayError::BodyTooLarge { limit }),
        _ => Ok(()),
    }
}

/// Reads a request body of at most `limit` bytes (chunked bodies are cut off at the limit, not buffered).
pub async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, GatewayError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::BodyTooLarge { limit })
        }
        Err(error) => Err(GatewayError::ReadBody(error.to_string())),
    }
}
