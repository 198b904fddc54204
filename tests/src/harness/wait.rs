//! Polling a condition until it holds or a timeout passes.

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, anyhow};

/// Pause between two checks: short enough to keep tests fast, long enough
/// not to flood the apiserver.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Calls `check` until it returns `Ok(Some(value))` and returns that value.
///
/// `Ok(None)` means "not yet"; an `Err` is remembered and polling goes on
/// (the apiserver may be briefly unavailable). On timeout the error names
/// `what` and carries the last error seen, if any.
///
/// ```no_run
/// # async fn example(api: kube::Api<k8s_openapi::api::core::v1::ConfigMap>) -> anyhow::Result<()> {
/// use std::time::Duration;
/// let config_map = sluice_tests::harness::wait_for("config map to exist", Duration::from_secs(5), || async {
///     Ok(api.get_opt("gateway-config").await?)
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(match last_error {
                Some(error) => error.context(format!(
                    "timed out after {timeout:?} waiting for {what} (last error below)"
                )),
                None => anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_the_condition_holds() {
        let mut calls = 0;
        let value = wait_for("the third call", Duration::from_secs(5), || {
            calls += 1;
            let current = calls;
            async move { Ok((current >= 3).then_some(current)) }
        })
        .await
        .unwrap();
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn timeout_names_the_condition_and_the_last_error() {
        let error =
            wait_for::<(), _, _>("the moon to rise", Duration::from_millis(250), || async {
                Err(anyhow!("connection refused"))
            })
            .await
            .unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("waiting for the moon to rise"),
            "{message}"
        );
        assert!(message.contains("connection refused"), "{message}");
    }
}
