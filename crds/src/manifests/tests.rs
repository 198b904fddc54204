//! Tests of manifest loading: documents, defaults, Secrets, skipped kinds and every error path.

use pretty_assertions::assert_eq;

use super::*;
use crate::compile::{Kind, compile};
use crate::conditions::reason;

fn parse(text: &str) -> Result<Manifests, Error> {
    parse_str(Path::new("m.yaml"), text)
}

const ROUTE: &str = "apiVersion: sluice.dev/v1alpha1
kind: LLMRoute
metadata: {name: chat}
spec:
  model: chat
  backends: [{name: local, provider: openai-compatible, model: llama, endpoint: 'http://vllm:8000/v1'}]
";

#[test]
fn documents_are_read_with_schema_defaults_and_the_default_namespace() {
    let text = format!(
        "{ROUTE}---
apiVersion: sluice.dev/v1alpha1
kind: Budget
metadata: {{name: monthly, namespace: team-a}}
spec: {{limitUSD: 10}}
---
---
apiVersion: sluice.dev/v1alpha1
kind: VirtualKey
metadata: {{name: ci, namespace: team-a}}
spec: {{}}
"
    );
    let manifests = parse(&text).expect("valid");
    let route = &manifests.routes[0];
    assert_eq!(route.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(route.spec.gateway, "default");
    assert_eq!(route.spec.timeouts.connect, "5s", "schema default");
    assert_eq!(route.spec.backends[0].weight, 1, "schema default");
    assert_eq!(manifests.budgets[0].spec.thresholds, vec![50, 80, 100]);
    assert_eq!(
        manifests.keys[0].metadata.namespace.as_deref(),
        Some("team-a")
    );
    assert!(manifests.warnings.is_empty());
}

#[test]
fn secrets_merge_base64_data_and_string_data() {
    let text = "apiVersion: v1
kind: Secret
metadata: {name: keys, namespace: team-a}
data: {openai: c2stZnJvbS1kYXRh, both: ZnJvbS1kYXRh}
stringData: {anthropic: sk-from-string-data, both: from-string-data}
";
    let manifests = parse(text).expect("valid");
    let data = manifests.secrets.get("team-a", "keys").expect("secret");
    assert_eq!(data["openai"], b"sk-from-data");
    assert_eq!(data["anthropic"], b"sk-from-string-data");
    assert_eq!(
        data["both"], b"from-string-data",
        "stringData wins, as on the API server"
    );
}

#[test]
fn other_kinds_are_skipped_with_a_warning_and_lists_are_unpacked() {
    let text = format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: team-a}}
---
apiVersion: v1
kind: List
items:
- {}
",
        serde_json::to_string(&serde_yaml::from_str::<serde_json::Value>(ROUTE).unwrap()).unwrap()
    );
    let manifests = parse(&text).expect("valid");
    assert_eq!(manifests.routes.len(), 1);
    assert_eq!(
        manifests.warnings,
        vec![
            "m.yaml, document 1: skipped v1 Namespace team-a (only LLMRoute, VirtualKey, Budget and Secret are read)"
        ]
    );
}

#[test]
fn bad_documents_name_the_file_document_and_field() {
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{ROUTE}---\nkind: [unclosed\n"),
            "m.yaml, document 2: not valid YAML",
        ),
        (
            "kind: LLMRoute\nmetadata: {name: x}\n".into(),
            "m.yaml, document 1: apiVersion is missing",
        ),
        (
            "apiVersion: v1\nmetadata: {name: x}\n".into(),
            "m.yaml, document 1: kind is missing",
        ),
        (
            ROUTE.replace("v1alpha1", "v1beta9"),
            "m.yaml, document 1: LLMRoute has apiVersion sluice.dev/v1beta9; this version of Sluice reads sluice.dev/v1alpha1",
        ),
        (
            ROUTE.replace("{name: chat}", "{namespace: x}"),
            "m.yaml, document 1: LLMRoute has no metadata.name",
        ),
        (
            ROUTE.replace("openai-compatible", "openia"),
            "m.yaml, document 1 (LLMRoute chat): spec.backends[0].provider: unknown variant `openia`",
        ),
        (
            ROUTE.replace("  model: chat\n", ""),
            "m.yaml, document 1 (LLMRoute chat): spec: missing field `model`",
        ),
        (
            ROUTE.replace("model: chat", "model: chat\n  modle: typo"),
            "m.yaml, document 1 (LLMRoute chat): unknown field spec.modle",
        ),
        (
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: '!!notbase64'}\n".into(),
            "m.yaml, document 1 (Secret s): data.k: ",
        ),
        (
            format!("{ROUTE}---\n{ROUTE}"),
            "LLMRoute default/chat is defined twice: at m.yaml, document 1 and at m.yaml, document 2",
        ),
    ];
    for (text, expected) in cases {
        let error = parse(&text).expect_err(&text).to_string();
        assert!(
            error.starts_with(expected),
            "{text}\n  got:  {error}\n  want: {expected}"
        );
    }
}

#[test]
fn a_folder_is_read_one_level_deep_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.yml"), ROUTE.replace("chat", "second")).unwrap();
    std::fs::write(dir.path().join("a.yaml"), ROUTE).unwrap();
    std::fs::write(dir.path().join(".hidden.yaml"), "not: [yaml").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not: [yaml").unwrap();
    std::fs::create_dir(dir.path().join("nested")).unwrap();
    std::fs::write(
        dir.path().join("nested/c.yaml"),
        ROUTE.replace("chat", "nested"),
    )
    .unwrap();
    let manifests = load_dir(dir.path()).expect("valid");
    let names: Vec<String> = manifests
        .routes
        .iter()
        .map(|r| r.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, vec!["chat", "second"]);

    std::fs::write(
        dir.path().join("c.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: [1]\n",
    )
    .unwrap();
    let error = load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!(
            "{}, document 1 (Secret s): data: ",
            dir.path().join("c.yaml").display()
        )),
        "{error}"
    );

    let missing = load_dir(&dir.path().join("absent"))
        .unwrap_err()
        .to_string();
    assert!(missing.starts_with("reading directory "), "{missing}");
}

#[test]
fn the_examples_folder_loads_and_compiles() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut manifests = load_dir(&examples).expect("examples load");
    assert!(
        !manifests.routes.is_empty() && !manifests.keys.is_empty() && !manifests.budgets.is_empty()
    );
    assert!(
        manifests.warnings.iter().all(|w| w.contains("Namespace")),
        "{:?}",
        manifests.warnings
    );

    let now = chrono::Utc::now();
    let compiled = compile(&manifests.inputs(crate::DEFAULT_GATEWAY, now));
    for (object, outcome) in &compiled.outcomes {
        if object.kind != Kind::VirtualKey {
            assert!(outcome.published(), "{object}: {outcome:?}");
        }
    }
    // Without an operator nobody generated the key's Secret yet; the compiler says so.
    let key = &manifests.keys[0];
    let key_ref = compiled
        .outcomes
        .iter()
        .find(|(o, _)| o.kind == Kind::VirtualKey && Some(&o.name) == key.metadata.name.as_ref())
        .map(|(_, outcome)| outcome.resolved_refs.clone());
    assert_eq!(
        key_ref.and_then(Result::err).map(|p| p.reason),
        Some(reason::SECRET_NOT_FOUND)
    );

    // A local demo supplies the key Secret itself, as the operator would.
    let name = key.metadata.name.clone().unwrap();
    let namespace = key.metadata.namespace.clone().unwrap();
    let value = format!("{}{}", crate::compile::KEY_PREFIX, "x".repeat(43));
    let data = [(
        crate::compile::KEY_DATA_CURRENT.to_owned(),
        value.into_bytes(),
    )]
    .into();
    manifests.secrets.insert(
        namespace,
        crate::compile::generated_key_secret_name(&name),
        data,
    );
    let compiled = compile(&manifests.inputs(crate::DEFAULT_GATEWAY, now));
    assert!(
        compiled.outcomes.values().all(|o| o.published()),
        "{:?}",
        compiled.outcomes
    );
}
