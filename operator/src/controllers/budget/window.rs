//! Budget window arithmetic lives in `sluice_crds::window`, shared with the gateway's local mode.
pub use sluice_crds::window::*;
