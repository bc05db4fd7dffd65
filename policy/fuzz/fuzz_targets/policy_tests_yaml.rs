//! Cedar inputs from outside: policy-test files (`convergio policy test`)
//! carry principals, resources and contexts with arbitrary strings, which
//! become Cedar entity ids and attributes. Any text parses to cases or a
//! typed error; every case runs against the shipped policies, and the
//! indexed decision equals the whole-set decision.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use convergio_policy::testing::{parse_test_file, run_cases, Report};
use convergio_policy::{AuthzRequest, PolicyEngine};
use libfuzzer_sys::fuzz_target;

fn engine() -> &'static PolicyEngine {
    static ENGINE: OnceLock<PolicyEngine> = OnceLock::new();
    ENGINE.get_or_init(|| PolicyEngine::with_defaults().expect("the shipped policies load"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.yaml");
    let Ok(file) = parse_test_file(path, text) else {
        return;
    };
    let engine = engine();
    let mut report = Report::default();
    run_cases(path, &file, engine, &mut report);
    for case in &file.cases {
        let request = AuthzRequest {
            principal: &case.principal,
            action: case.action,
            resource: &case.resource,
            context: &case.context,
        };
        assert_eq!(
            engine.authorize(&request),
            engine.authorize_unindexed(&request)
        );
    }
});
