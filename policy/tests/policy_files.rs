//! The YAML test runner's handling of badly shaped files.

use std::path::Path;

use convergio_policy::testing::{parse_test_file, run_policy_tests};
use convergio_policy::{PolicyEngine, PolicyError};

#[test]
fn test_file_with_a_missing_field_names_file_and_field() {
    let text = "cases:\n  - name: no action\n    principal: { subject: a, scopes: [], method: jwt }\n    resource: { type: policy }\n    expect: allow\n";
    let error = parse_test_file(Path::new("broken.yaml"), text).expect_err("action is missing");
    let message = error.to_string();
    assert!(matches!(error, PolicyError::InvalidInput(_)));
    assert!(message.contains("broken.yaml"), "{message}");
    assert!(message.contains("action"), "{message}");
}

#[test]
fn test_file_with_an_unknown_expectation_is_an_error() {
    let text = "cases:\n  - name: x\n    principal: { subject: a, scopes: [], method: jwt }\n    action: discover\n    resource: { type: policy }\n    expect: maybe\n";
    let error = parse_test_file(Path::new("odd.yaml"), text).expect_err("maybe is not allow|deny");
    assert!(error.to_string().contains("odd.yaml"), "{error}");
}

#[test]
fn failing_case_is_reported_not_panicked() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("wrong.yaml"),
        "cases:\n  - name: anonymous may administer\n    principal: { subject: anonymous, scopes: [], method: anonymous }\n    action: administer_policy\n    resource: { type: policy }\n    expect: allow\n",
    )
    .expect("writes");
    let engine = PolicyEngine::with_defaults().expect("defaults");
    let report = run_policy_tests(dir.path(), &engine).expect("well-formed");
    assert_eq!(report.cases, 1);
    assert_eq!(report.failures.len(), 1);
    assert!(!report.success());
}

#[test]
fn missing_directory_is_an_io_error() {
    let engine = PolicyEngine::with_defaults().expect("defaults");
    let error =
        run_policy_tests(Path::new("/nonexistent/policy-tests"), &engine).expect_err("no such dir");
    assert!(matches!(error, PolicyError::Io { .. }));
}
