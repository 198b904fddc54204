//! The admin listener: `/healthz` (the process is alive), `/readyz` (serving, with the configuration's
//! hash and the last reload error as JSON detail), `/metrics` (Prometheus/OpenMetrics text).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::body::{self, ResponseBody};
use crate::config::{ConfigStore, ReloadStatus};
use crate::metrics::{self, Metrics};

/// Whether the gateway is draining (set on SIGTERM; `/readyz` then fails so load balancers stop sending).
#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
}

impl Lifecycle {
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// `/readyz` body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    pub ready: bool,
    pub draining: bool,
    #[serde(flatten)]
    pub reload: ReloadStatus,
}

/// Serves the admin endpoints.
#[derive(Debug, Clone)]
pub struct Admin {
    pub store: Arc<ConfigStore>,
    pub metrics: Arc<Metrics>,
    pub lifecycle: Arc<Lifecycle>,
}

impl Admin {
    /// The readiness verdict and its detail.
    pub fn readiness(&self) -> Readiness {
        let draining = self.lifecycle.is_draining();
        let loaded = self.store.current().is_some();
        Readiness {
            ready: loaded && !draining,
            draining,
            reload: self.store.status(),
        }
    }

    pub fn handle<B>(&self, request: &Request<B>) -> Response<ResponseBody> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return body::text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n");
        }
        match request.uri().path() {
            "/healthz" => body::text(StatusCode::OK, "text/plain", "ok\n"),
            "/readyz" => {
                let readiness = self.readiness();
                let status = if readiness.ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                body::json(status, serde_json::to_vec(&readiness).unwrap_or_default())
            }
            "/metrics" => body::text(StatusCode::OK, metrics::CONTENT_TYPE, self.metrics.encode()),
            _ => body::text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    }
}
