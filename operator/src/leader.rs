//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly one writes.
//!
//! Every instance reads the Lease each renew interval (and exactly when the current holder's Lease
//! runs out). It takes a Lease that is free or expired (`renewTime + leaseDurationSeconds` in the
//! past) with an update guarded by `resourceVersion`, so of two candidates only one wins. The holder
//! renews every renew interval and steps down on its own once it has not renewed for
//! `lease duration - renew interval`: it stops writing before anyone else may start, as long as
//! clocks differ by less than the renew interval. On graceful shutdown the holder frees the Lease so a
//! replacement takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result, is_status, object};

/// Where the Lease lives and how it is held.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
    pub renew_interval: Duration,
}

impl LeaseConfig {
    /// How long after its last successful renewal the holder keeps acting as leader.
    fn renew_deadline(&self) -> Duration {
        self.duration.saturating_sub(self.renew_interval)
    }
}

/// What one look at the Lease found.
#[derive(Debug, PartialEq, Eq)]
enum Observation {
    /// We hold it (just acquired or renewed).
    Held,
    /// Someone else holds it until the given time.
    HeldByOther { holder: String, expires: Timestamp },
}

/// Runs the election until `cancel` fires, publishing `true` while this instance leads.
/// On cancellation a held Lease is released.
pub async fn run(
    client: Client,
    config: LeaseConfig,
    leading: watch::Sender<bool>,
    cancel: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut last_renewal: Option<Instant> = None;
    loop {
        let attempt_started = Instant::now();
        // A renewal that hangs must not keep a stale leader in charge: bound it by the deadline.
        let limit = match last_renewal {
            Some(renewed) => {
                (renewed + config.renew_deadline()).saturating_duration_since(attempt_started)
            }
            None => config.renew_interval,
        };
        let observed = tokio::select! {
            () = cancel.cancelled() => break,
            result = tokio::time::timeout(limit, try_acquire_or_renew(&api, &config)) => result,
        };
        let next_check = match observed {
            Ok(Ok(Observation::Held)) => {
                if last_renewal.is_none() {
                    tracing::info!(lease = %config.name, identity = %config.identity, "acquired the leader lease");
                }
                last_renewal = Some(attempt_started);
                leading.send_replace(true);
                config.renew_interval
            }
            Ok(Ok(Observation::HeldByOther { holder, expires })) => {
                if last_renewal.take().is_some() {
                    tracing::warn!(lease = %config.name, %holder, "lost the leader lease to another instance");
                }
                leading.send_replace(false);
                // Look again when the holder's lease runs out, or after one interval, whichever is first.
                let until_expiry = Duration::try_from(expires.duration_since(Timestamp::now()))
                    .unwrap_or(Duration::ZERO);
                until_expiry.min(config.renew_interval) + jitter()
            }
            Ok(Err(error)) => {
                tracing::warn!(lease = %config.name, error = %error, "leader election step failed");
                step_down_if_overdue(&config, &mut last_renewal, &leading);
                config.renew_interval.min(Duration::from_secs(1))
            }
            Err(_elapsed) => {
                tracing::warn!(lease = %config.name, "leader lease request timed out");
                step_down_if_overdue(&config, &mut last_renewal, &leading);
                Duration::ZERO
            }
        };
        // Sleep, but wake early to step down when the renewal deadline passes.
        let wake = Instant::now() + next_check;
        let deadline = last_renewal.map(|renewed| renewed + config.renew_deadline());
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep_until(deadline.map_or(wake, |deadline| deadline.min(wake))) => {}
        }
        step_down_if_overdue(&config, &mut last_renewal, &leading);
    }
    if last_renewal.is_some() {
        leading.send_replace(false);
        match release(&api, &config).await {
            Ok(()) => tracing::info!(lease = %config.name, "released the leader lease"),
            Err(error) => {
                tracing::warn!(lease = %config.name, error = %error, "could not release the leader lease")
            }
        }
    }
}

fn step_down_if_overdue(
    config: &LeaseConfig,
    last_renewal: &mut Option<Instant>,
    leading: &watch::Sender<bool>,
) {
    if let Some(renewed) = *last_renewal
        && renewed.elapsed() >= config.renew_deadline()
    {
        tracing::warn!(lease = %config.name, "could not renew the leader lease in time; stepping down");
        *last_renewal = None;
        leading.send_replace(false);
    }
}

/// Up to 100 ms, so candidates that wake at the same expiry do not collide every time.
fn jitter() -> Duration {
    use rand::Rng as _;
    Duration::from_millis(rand::rng().random_range(0..100))
}

/// One election step: create, take over, renew, or report the other holder.
async fn try_acquire_or_renew(api: &Api<Lease>, config: &LeaseConfig) -> Result<Observation> {
    let lease_error = |source| Error::Lease {
        object: object(&config.namespace, &config.name),
        source: Box::new(source),
    };
    let now = Timestamp::now();
    let Some(current) = api.get_opt(&config.name).await.map_err(lease_error)? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(held_spec(config, now, now, 0)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Observation::Held),
            // Another candidate created it first: look again next time.
            Err(error) if is_status(&error, 409) => Ok(other_holder(
                &api.get(&config.name).await.map_err(lease_error)?,
            )),
            Err(error) => Err(lease_error(error)),
        };
    };
    let spec = current.spec.clone().unwrap_or_default();
    let holder = spec
        .holder_identity
        .clone()
        .filter(|holder| !holder.is_empty());
    let ours = holder.as_deref() == Some(config.identity.as_str());
    if !ours && holder.is_some() && expiry(&spec).is_some_and(|expires| expires > now) {
        return Ok(other_holder(&current));
    }
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
    let acquired = if ours {
        spec.acquire_time.map_or(now, |time| time.0)
    } else {
        now
    };
    let mut updated = current.clone();
    updated.spec = Some(held_spec(config, acquired, now, transitions));
    // `replace` sends our resourceVersion: if anyone wrote the Lease since we read it, this fails.
    match api
        .replace(&config.name, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(Observation::Held),
        Err(error) if is_status(&error, 409) => Ok(other_holder(
            &api.get(&config.name).await.map_err(lease_error)?,
        )),
        Err(error) => Err(lease_error(error)),
    }
}

fn held_spec(
    config: &LeaseConfig,
    acquired: Timestamp,
    renewed: Timestamp,
    transitions: i32,
) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(
            i32::try_from(config.duration.as_secs().max(1)).unwrap_or(i32::MAX),
        ),
        acquire_time: Some(MicroTime(acquired)),
        renew_time: Some(MicroTime(renewed)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

fn expiry(spec: &LeaseSpec) -> Option<Timestamp> {
    let renewed = spec.renew_time.as_ref()?.0;
    let seconds = i64::from(spec.lease_duration_seconds?);
    renewed
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds))
        .ok()
}

fn other_holder(lease: &Lease) -> Observation {
    let spec = lease.spec.clone().unwrap_or_default();
    Observation::HeldByOther {
        holder: spec.holder_identity.clone().unwrap_or_default(),
        expires: expiry(&spec).unwrap_or_else(Timestamp::now),
    }
}

/// Frees the Lease if we still hold it, so a replacement need not wait for it to expire.
async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<()> {
    let lease_error = |source| Error::Lease {
        object: object(&config.namespace, &config.name),
        source: Box::new(source),
    };
    let Some(mut lease) = api.get_opt(&config.name).await.map_err(lease_error)? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    api.replace(&config.name, &PostParams::default(), &lease)
        .await
        .map_err(lease_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LeaseConfig {
        LeaseConfig {
            name: "lease".into(),
            namespace: "ns".into(),
            identity: "me".into(),
            duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
        }
    }

    #[test]
    fn the_leader_steps_down_one_renew_interval_before_others_may_take_over() {
        assert_eq!(config().renew_deadline(), Duration::from_secs(10));
    }

    #[test]
    fn a_lease_expires_its_duration_after_the_last_renewal() {
        let renewed = Timestamp::from_second(1_000).expect("time");
        let spec = held_spec(&config(), renewed, renewed, 3);
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(
            expiry(&spec),
            Some(Timestamp::from_second(1_015).expect("time"))
        );
        let lease = Lease {
            metadata: ObjectMeta::default(),
            spec: Some(spec),
        };
        assert_eq!(
            other_holder(&lease),
            Observation::HeldByOther {
                holder: "me".into(),
                expires: Timestamp::from_second(1_015).expect("time")
            }
        );
        assert_eq!(
            expiry(&LeaseSpec::default()),
            None,
            "a Lease never renewed has no expiry"
        );
    }
}
