//! Budgets: their status (conditions, window start and reset time) from each compile.

pub mod status;
pub mod window;
