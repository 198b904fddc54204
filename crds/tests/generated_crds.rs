//! The CRD YAML checked into the repository must match what the Rust types generate.

#[test]
fn generated_crd_files_match_the_rust_types() {
    if let Err(error) = sluice_crds::crdgen::check(&sluice_crds::crdgen::default_dir()) {
        panic!("{error}");
    }
}

#[test]
fn every_crd_has_status_printer_columns_short_names_and_the_sluice_category() {
    for (file, crd) in sluice_crds::crdgen::all() {
        let names = &crd.spec.names;
        assert_eq!(
            names.categories.as_deref(),
            Some(&["sluice".to_owned()][..]),
            "{file}"
        );
        assert!(
            names.short_names.as_ref().is_some_and(|s| !s.is_empty()),
            "{file}"
        );
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{file}"
        );
        assert!(
            version
                .additional_printer_columns
                .as_ref()
                .is_some_and(|c| c.len() >= 4),
            "{file}"
        );
    }
}

#[test]
fn drift_is_detected() {
    let dir = std::env::temp_dir().join(format!("sluice-crdgen-drift-{}", std::process::id()));
    sluice_crds::crdgen::write(&dir).expect("write");
    let file = dir.join("sluice.dev_budgets.yaml");
    let edited = std::fs::read_to_string(&file)
        .expect("read")
        .replace("budgets", "budgetz");
    std::fs::write(&file, edited).expect("edit");
    let error = sluice_crds::crdgen::check(&dir).expect_err("an edited file must be reported");
    assert!(error.to_string().contains("out of date"), "{error}");
    std::fs::remove_dir_all(&dir).ok();
}
