//! The environment-variable table is written twice, in the README and in
//! the crate docs (`src/lib.rs`): users land on either. They must agree.

/// The rows of the `GREENRT_*` table in `text`, with `prefix` (the crate
/// docs' `//! `) stripped.
fn env_rows(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(str::trim_end)
        .filter(|l| l.starts_with("| `GREENRT_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn readme_and_crate_docs_list_the_same_environment_variables() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let lib = std::fs::read_to_string(format!("{root}/src/lib.rs")).unwrap();
    let (in_readme, in_docs) = (env_rows(&readme, ""), env_rows(&lib, "//! "));
    assert!(
        in_readme.len() >= 6,
        "the README's table has {} GREENRT_ rows",
        in_readme.len()
    );
    assert_eq!(
        in_readme, in_docs,
        "README.md and src/lib.rs's environment-variable tables differ"
    );
}
