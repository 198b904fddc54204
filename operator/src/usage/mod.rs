//! Usage ingest: gateways push usage and backend health to `POST /v1/usage/reports`; the leader folds
//! each report exactly once into a persisted ledger, answers with global budget spend and a budget grant,
//! and hands a usage view to the status writer.
//!
//! - [`server`]: the HTTP endpoint (every instance serves it; only the leader acknowledges)
//! - [`validate`]: protocol version and shape checks
//! - [`inbox`]: the hand-over from the endpoint to the leader's folder
//! - [`folder`]: batching, folding, persisting, acknowledging, publishing the view
//! - [`ledger`]: the pure folded state and the exactly-once rule
//! - [`grants`]: the pure budget grant rule and its overshoot bound
//! - [`store`]: the ledger's ConfigMap
//! - [`view`] and [`health`]: what the statuses show
//! - [`clock`]: the injectable time source

pub mod clock;
pub mod error;
pub mod folder;
pub mod grants;
pub mod health;
pub mod inbox;
pub mod ledger;
pub mod server;
pub mod store;
pub mod validate;
pub mod view;

pub use self::clock::{Clock, ShiftedClock, SystemClock};
pub use self::inbox::Inbox;
pub use self::view::UsageView;
