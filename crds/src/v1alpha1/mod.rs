//! Version `v1alpha1` of the `sluice.dev` API: `LLMRoute`, `VirtualKey` and `Budget`.

mod budget;
mod common;
mod llm_route;
mod virtual_key;

pub use budget::*;
pub use common::*;
pub use llm_route::*;
pub use virtual_key::*;
