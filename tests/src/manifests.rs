//! Manifest fragments shared by the gateway tests that serve a folder in local mode.

/// The `team` namespace's provider Secret (`providers`, key `key`), the application key's Secret
/// (`app-key`) and the `app` VirtualKey that uses it, as YAML documents ending in a separator.
pub fn team_credentials(provider_key: &str, app_key: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: providers, namespace: team}}
stringData: {{key: {provider_key}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: app-key, namespace: team}}
stringData: {{key: {app_key}}}
---
apiVersion: sluice.dev/v1alpha1
kind: VirtualKey
metadata: {{name: app, namespace: team}}
spec:
  secretRef: {{name: app-key, key: key}}
---"#
    )
}
