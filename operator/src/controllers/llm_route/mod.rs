//! LLM routes: their status (conditions, ready backends) from each compile.

pub mod status;
