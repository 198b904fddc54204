//! Kubeconfig files for the harness's identities, and kube clients built from them.

use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine as _;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::private_file::write_private_file;

/// Writes a single-context kubeconfig that authenticates with a bearer token
/// and trusts `ca_pem` (the apiserver's self-signed serving certificate).
pub fn write_token_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: &[u8],
    user: &str,
    token: &str,
) -> Result<()> {
    let ca_data = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "sluice-test",
            "cluster": { "server": server, "certificate-authority-data": ca_data },
        }],
        "users": [{ "name": user, "user": { "token": token } }],
        "contexts": [{
            "name": user,
            "context": { "cluster": "sluice-test", "user": user, "namespace": "default" },
        }],
        "current-context": user,
    });
    let yaml = serde_yaml::to_string(&kubeconfig).context("serialize kubeconfig")?;
    write_private_file(path, &yaml)
}

/// Builds a client from a kubeconfig file, optionally impersonating `as_user`.
///
/// The client's background tasks run on the calling tokio runtime, so every
/// test builds its own.
pub async fn client_from_kubeconfig(path: &Path, as_user: Option<&str>) -> Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("read kubeconfig {}", path.display()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("load kubeconfig {}", path.display()))?;
    if let Some(user) = as_user {
        config.auth_info.impersonate = Some(user.to_owned());
    }
    kube::Client::try_from(config).context("build kube client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_kubeconfig_reads_back_with_server_ca_and_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.kubeconfig");
        let ca = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        write_token_kubeconfig(&path, "https://127.0.0.1:6443", ca, "alice", "t0ken").unwrap();

        let kubeconfig = Kubeconfig::read_from(&path).unwrap();
        assert_eq!(kubeconfig.current_context.as_deref(), Some("alice"));
        let cluster = kubeconfig.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        let ca_data = cluster.certificate_authority_data.as_deref().unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(ca_data)
                .unwrap(),
            ca
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o077, 0, "kubeconfig holds a token: owner-only");
    }
}
