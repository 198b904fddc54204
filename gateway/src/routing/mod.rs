//! Pure routing decisions: which backends a request may use, in which order, and with which parameters.
//!
//! Nothing here performs I/O. The only state is the small per-route and per-backend memory the strategies
//! need (smooth weighted round-robin counters, latency averages), owned by the caller and carried across
//! configuration reloads.

mod ewma;
mod params;
mod select;
mod sticky;
mod swrr;

pub use ewma::LatencyEwma;
pub use params::apply_route_parameters;
pub use select::{BackendView, Selection, order_candidates, region_allowed};
pub use sticky::sticky_order;
pub use swrr::SmoothWeighted;
