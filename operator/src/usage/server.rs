//! The usage endpoint, `POST /v1/usage/reports`: reads a bounded body, validates the report, hands it
//! to the leader's folder and answers with its acknowledgement.
//!
//! Answers: 200 with a `UsageAck`; 400 for a report that is not valid JSON or not a valid report (every
//! problem listed); 413 over the size limit; 503 with `Retry-After` when this instance does not lead or
//! the ledger cannot be written (the gateway resends the same report, which is safe: folding is exactly
//! once). Error bodies have the OpenAI shape `{"error": {"message", "type", "code"}}`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sluice_crds::usage::{REPORT_PATH, UsageReport};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::inbox::{Inbox, Refusal};
use super::validate::validate;
use crate::metrics::{Metrics, ReportResult};

/// Largest report body accepted: a report of [`super::validate::MAX_ENTRIES`] entries fits.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// How long a report may wait for its acknowledgement before the gateway is told to resend.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// What the endpoint needs.
#[derive(Clone, Debug)]
pub struct IngestState {
    pub inbox: Inbox,
    pub metrics: Arc<Metrics>,
    /// The gateway this operator serves; reports for another are refused.
    pub gateway: String,
}

/// Serves the endpoint on `listener` until `cancel` fires.
pub async fn serve(listener: TcpListener, state: IngestState, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(error = %error, "accepting a usage connection failed");
                continue;
            }
        };
        let state = state.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&state, request).await) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = cancel.cancelled() => {}
                result = connection => if let Err(error) = result {
                    tracing::debug!(error = %error, "usage connection ended with an error");
                }
            }
        });
    }
}

async fn respond(state: &IngestState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() != REPORT_PATH {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("not found: usage reports go to POST {REPORT_PATH}"),
        );
    }
    if request.method() != Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "only POST",
        );
    }
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(cause) => {
            state.metrics.report(ReportResult::rejected);
            return if cause
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "report_too_large",
                    &format!("a usage report is at most {MAX_BODY_BYTES} bytes; flush more often"),
                )
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    "invalid_usage_report",
                    "the request body could not be read",
                )
            };
        }
    };
    let report: UsageReport = match serde_json::from_slice(&body) {
        Ok(report) => report,
        Err(cause) => {
            state.metrics.report(ReportResult::rejected);
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_usage_report",
                &format!("the body is not a usage report: {cause}"),
            );
        }
    };
    if let Err(problems) = validate(&report, &state.gateway) {
        state.metrics.report(ReportResult::rejected);
        tracing::warn!(pod = %report.reporter.pod, problems = %problems.join("; "), "refused an invalid usage report");
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_usage_report",
            &format!("invalid usage report: {}", problems.join("; ")),
        );
    }
    match tokio::time::timeout(ANSWER_TIMEOUT, state.inbox.submit(report)).await {
        Ok(Ok(ack)) => match serde_json::to_vec(&ack) {
            Ok(json) => json_response(StatusCode::OK, json),
            Err(cause) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                &format!("encoding the acknowledgement: {cause}"),
            ),
        },
        Ok(Err(refusal)) => {
            if refusal == Refusal::NotLeader {
                state.metrics.report(ReportResult::unavailable);
            }
            unavailable(
                match refusal {
                    Refusal::NotLeader => "not_leader",
                    Refusal::Unavailable(_) => "ledger_unavailable",
                },
                &refusal.to_string(),
            )
        }
        Err(_) => {
            state.metrics.report(ReportResult::unavailable);
            unavailable("timeout", "the report was not folded in time; retry")
        }
    }
}

fn unavailable(code: &str, message: &str) -> Response<Full<Bytes>> {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, code, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let kind = if status.is_client_error() {
        "invalid_request_error"
    } else {
        "server_error"
    };
    let body = serde_json::json!({"error": {"message": message, "type": kind, "code": code}});
    json_response(status, body.to_string().into_bytes())
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
