//! A unique namespace per test that dumps its objects to stderr if the test fails.

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use rand::Rng as _;

use super::control_plane::ControlPlane;
use super::kubectl::Kubectl;

/// Label on every test namespace, so leftovers on a shared cluster are easy to find.
pub const TEST_NAMESPACE_LABEL: &str = "sluice.dev/test-namespace";
/// ConfigMaps can hold a whole gateway config; cap what each dump section prints.
const DUMP_SECTION_LIMIT: usize = 16 * 1024;
/// Room for the random suffix within the 63-character name limit.
const MAX_PREFIX_LEN: usize = 50;

/// A namespace that exists for one test.
///
/// If the test panics, dropping it prints the namespace's Sluice resources,
/// ConfigMaps, Secret names (never their data) and Events to stderr. A test
/// that returns `Err` is not panicking when its locals drop, so assert (or
/// `expect`) the checks whose failure needs that context. On an
/// existing cluster it is deleted after a passing test; a local control
/// plane is thrown away with its etcd, and namespaces never finish
/// terminating there anyway (no controller-manager).
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
    kubectl: Kubectl,
    delete_on_success: bool,
}

impl TestNamespace {
    /// Creates `<prefix>-<random>` with the admin `client`.
    pub async fn new(client: &Client, prefix: &str) -> Result<Self> {
        if prefix.is_empty()
            || prefix.len() > MAX_PREFIX_LEN
            || !prefix
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        {
            bail!(
                "namespace prefix {prefix:?} must be 1-{MAX_PREFIX_LEN} lowercase letters, digits or '-'"
            );
        }
        let control_plane = ControlPlane::shared()?;
        let name = format!("{prefix}-{}", random_suffix());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(TEST_NAMESPACE_LABEL.to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("create namespace {name}"))?;
        Ok(Self {
            name,
            kubectl: control_plane.kubectl(),
            delete_on_success: control_plane.is_existing_cluster(),
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything a failed test's reader needs to see, as text.
    pub fn dump(&self) -> String {
        let namespace = self.name.as_str();
        let sections: [(&str, Vec<&str>); 5] = [
            (
                "Sluice resources",
                vec![
                    "get",
                    "llmroutes,virtualkeys,budgets",
                    "-n",
                    namespace,
                    "-o",
                    "yaml",
                ],
            ),
            (
                "ConfigMaps",
                vec!["get", "configmaps", "-n", namespace, "-o", "yaml"],
            ),
            (
                "Secrets (names only)",
                vec![
                    "get",
                    "secrets",
                    "-n",
                    namespace,
                    "-o",
                    "custom-columns=NAME:.metadata.name,TYPE:.type,OWNER:.metadata.ownerReferences[*].name",
                ],
            ),
            (
                "Deployments, Services, Leases",
                vec!["get", "deployments,services,leases", "-n", namespace],
            ),
            (
                "Events",
                vec!["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"],
            ),
        ];
        let mut dump = format!("===== objects in test namespace {namespace} =====\n");
        for (title, args) in sections {
            let body = match self.kubectl.run(&args, None) {
                Ok(output) if output.success && output.stdout.trim().is_empty() => {
                    "(none)".to_owned()
                }
                Ok(output) if output.success => output.stdout,
                Ok(output) => format!("(kubectl failed: {})", output.stderr.trim()),
                Err(error) => format!("(kubectl did not run: {error:#})"),
            };
            dump.push_str(&format!("----- {title} -----\n{}\n", truncate(&body)));
        }
        dump
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.dump());
            if self.delete_on_success {
                eprintln!("namespace {} kept for inspection", self.name);
            }
        } else if self.delete_on_success {
            let _ = self.kubectl.run(
                ["delete", "namespace", self.name.as_str(), "--wait=false"],
                None,
            );
        }
    }
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..6)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn truncate(text: &str) -> String {
    if text.len() <= DUMP_SECTION_LIMIT {
        return text.to_owned();
    }
    let mut end = DUMP_SECTION_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n(... {} more bytes)", &text[..end], text.len() - end)
}
