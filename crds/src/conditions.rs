//! Condition types and reasons shared by the operator (which writes them) and tests (which read them).

/// The resource is valid and was taken into the gateway configuration.
pub const ACCEPTED: &str = "Accepted";
/// Every reference (Secrets, Budgets) resolved.
pub const RESOLVED_REFS: &str = "ResolvedRefs";
/// Summary condition for `kubectl wait --for=condition=Ready` and GitOps health checks.
pub const READY: &str = "Ready";
/// A budget crossed one of its thresholds (Budget only).
pub const THRESHOLD_REACHED: &str = "ThresholdReached";

/// Reasons, in `UpperCamelCase` as Kubernetes conventions ask.
pub mod reason {
    pub const ACCEPTED: &str = "Accepted";
    pub const INVALID: &str = "Invalid";
    pub const CONFLICT: &str = "ModelConflict";
    pub const RESOLVED: &str = "Resolved";
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    pub const SECRET_KEY_NOT_FOUND: &str = "SecretKeyNotFound";
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    pub const BUDGET_NOT_FOUND: &str = "BudgetNotFound";
    pub const PUBLISHED: &str = "Published";
    pub const NOT_ACCEPTED: &str = "NotAccepted";
    pub const UNRESOLVED_REFS: &str = "UnresolvedRefs";
    pub const PUBLISH_FAILED: &str = "PublishFailed";
    pub const EXPIRED: &str = "Expired";
    pub const DISABLED: &str = "Disabled";
    pub const WITHIN_BUDGET: &str = "WithinBudget";
    pub const WARNING: &str = "ThresholdCrossed";
    pub const EXCEEDED: &str = "BudgetExceeded";
}
