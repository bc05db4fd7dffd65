//! Engine unit tests: validation diagnostics, the shipped policies' test
//! coverage, the lock-out check, the per-action index and the decision
//! cache.

use std::path::Path;

use convergio_schemas::{AgentId, AuthMethod, Principal, TrustLevel};

use super::*;

fn engine() -> PolicyEngine {
    PolicyEngine::with_defaults().expect("shipped schema and policies are valid")
}

fn alice() -> Principal {
    Principal {
        subject: "alice".to_owned(),
        org: Some("acme.example".to_owned()),
        scopes: Vec::new(),
        method: AuthMethod::Jwt,
    }
}

fn agent(org: &str, trust: TrustLevel) -> Resource {
    Resource::Agent {
        id: AgentId::internal("echo").expect("valid name"),
        org: org.to_owned(),
        trust,
        role: AgentRole::Worker,
        tags: vec!["demo".to_owned()],
        opt_in_external: false,
    }
}

#[test]
fn every_example_policy_is_covered_by_a_shipped_test() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/tests");
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).expect("policies/tests exists") {
        let path = entry.expect("dir entry").path();
        all.push_str(&std::fs::read_to_string(path).expect("readable"));
    }
    let set = engine().validate(EXAMPLE_POLICIES).expect("valid");
    for policy in set.policies() {
        let id = policy.id().to_string();
        assert!(all.contains(&id), "no test names policy {id}");
    }
}

#[test]
fn syntax_error_is_reported_with_line_and_column() {
    let text = "@id(\"a\")\npermit (principal, action, resource)\nwhen { context.scopes.contains(\"admin\") ;\n";
    let diagnostics = engine().validate(text).expect_err("does not parse");
    assert!(!diagnostics.is_empty());
    assert_eq!(diagnostics[0].line, 3, "{diagnostics:?}");
    assert!(diagnostics[0].column > 1, "{diagnostics:?}");
}

#[test]
fn unknown_entity_type_is_a_validation_error_with_location() {
    let text = "// header\n@id(\"bad\")\npermit (principal is Robot, action, resource);\n";
    let diagnostics = engine()
        .validate(text)
        .expect_err("Robot is not in the schema");
    assert!(
        diagnostics
            .iter()
            .any(|diagnostic| diagnostic.message.contains("Robot") && diagnostic.line == 3),
        "{diagnostics:?}"
    );
}

#[test]
fn unknown_attribute_is_a_validation_error() {
    let text = "permit (principal, action == Action::\"discover\", resource is Agent) when { resource.colour == \"red\" };";
    let diagnostics = engine().validate(text).expect_err("no such attribute");
    assert_eq!(diagnostics[0].line, 1);
}

#[test]
fn duplicate_policy_ids_are_rejected() {
    let text = "@id(\"x\") permit (principal, action, resource);\n@id(\"x\") forbid (principal, action, resource);\n";
    let diagnostics = engine().validate(text).expect_err("duplicate id");
    assert_eq!(diagnostics[0].line, 2, "{diagnostics:?}");
}

#[test]
fn failed_load_leaves_the_active_set_unchanged() {
    let engine = engine();
    let before = engine.active_text();
    assert!(engine
        .load(Some(9), "permit (principal is Robot, action, resource);")
        .is_err());
    assert_eq!(engine.active_text(), before);
    assert_eq!(engine.active_version(), None);
}

#[test]
fn lock_out_check_accepts_the_example_and_admin_only_sets() {
    let engine = engine();
    for text in [EXAMPLE_POLICIES, ADMIN_ONLY_POLICIES] {
        let set = engine.validate(text).expect("valid");
        assert!(engine.keeps_an_administrator(&set));
    }
}

#[test]
fn lock_out_check_refuses_a_set_without_administrators() {
    let engine = engine();
    let set = engine
        .validate(
            "@id(\"only-discover\") permit (principal, action == Action::\"discover\", resource);",
        )
        .expect("valid");
    assert!(!engine.keeps_an_administrator(&set));
    let forbid_admin = format!(
        "{EXAMPLE_POLICIES}\n@id(\"no-admin\") forbid (principal, action == Action::\"administer_policy\", resource);"
    );
    let set = engine.validate(&forbid_admin).expect("valid");
    assert!(!engine.keeps_an_administrator(&set));
}

#[test]
fn empty_engine_denies_everything() {
    let engine = PolicyEngine::new(DEFAULT_SCHEMA).expect("schema is valid");
    let decision = engine.authorize(&AuthzRequest {
        principal: &Principal::system(),
        action: Action::AdministerPolicy,
        resource: &Resource::Policy,
        context: &RequestContext::default(),
    });
    assert!(!decision.allowed);
    assert!(decision.determining.is_empty());
}

#[test]
fn policies_can_use_skill_time_and_tags() {
    let engine = engine();
    let text = format!(
        "{EXAMPLE_POLICIES}\n@id(\"skill-window\") permit (principal, action == Action::\"send_message\", resource is Agent) \
         when {{ context has skill && context.skill == \"translate\" && context.now < 2000000000 && resource.tags.contains(\"demo\") }};"
    );
    engine.load(Some(2), &text).expect("valid");
    let outsider = Principal {
        org: Some("other.example".to_owned()),
        ..alice()
    };
    let resource = agent("acme.example", TrustLevel::Registered);
    let decide = |skill: Option<&str>, now: i64| {
        engine
            .authorize(&AuthzRequest {
                principal: &outsider,
                action: Action::SendMessage,
                resource: &resource,
                context: &RequestContext {
                    skill: skill.map(str::to_owned),
                    now,
                    ..RequestContext::default()
                },
            })
            .allowed
    };
    assert!(decide(Some("translate"), 1_800_000_000));
    assert!(!decide(Some("translate"), 2_100_000_000));
    assert!(!decide(None, 1_800_000_000));
    assert_eq!(engine.active_version(), Some(2));
}

#[test]
fn action_index_keeps_decisions_identical_to_the_full_set() {
    let engine = engine();
    let set = engine.validate(EXAMPLE_POLICIES).expect("valid");
    let authorizer = Authorizer::new();
    let principals = [alice(), Principal::anonymous(), Principal::system()];
    let resources = [
        agent("acme.example", TrustLevel::Untrusted),
        agent("acme.example", TrustLevel::Internal),
        agent("other.example", TrustLevel::Verified),
        Resource::Policy,
        Resource::Graph {
            id: "g".to_owned(),
            org: "acme.example".to_owned(),
        },
    ];
    let contexts = [
        RequestContext::default(),
        RequestContext {
            graph_run: Some("run".to_owned()),
            ..RequestContext::default()
        },
    ];
    for principal in &principals {
        for action in Action::ALL {
            for resource in &resources {
                for context in &contexts {
                    let request = AuthzRequest {
                        principal,
                        action,
                        resource,
                        context,
                    };
                    let indexed = engine.authorize(&request);
                    let (cedar_request, entities) = engine.build(&request).expect("builds");
                    let full = authorizer.is_authorized(&cedar_request, &set, &entities);
                    assert_eq!(
                        indexed.allowed,
                        full.decision() == cedar_policy::Decision::Allow,
                        "{principal:?} {action} {resource:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn line_column_counts_characters() {
    assert_eq!(line_column("ab\ncd", 0), (1, 1));
    assert_eq!(line_column("ab\ncd", 4), (2, 2));
    assert_eq!(line_column("é\nx", 3), (2, 1));
    assert_eq!(line_column("short", 99), (1, 6));
}

#[test]
fn cached_decisions_agree_with_fresh_evaluation() {
    let engine = engine();
    let principals = [alice(), Principal::anonymous(), Principal::system()];
    let resources = [
        agent("acme.example", TrustLevel::Untrusted),
        agent("acme.example", TrustLevel::Internal),
        agent("other.example", TrustLevel::Verified),
        Resource::Policy,
    ];
    let contexts = [
        RequestContext::default(),
        RequestContext {
            loopback: true,
            ..RequestContext::default()
        },
        RequestContext {
            graph_run: Some("run".to_owned()),
            ..RequestContext::default()
        },
        RequestContext {
            namespace_agent: Some("writer".to_owned()),
            ..RequestContext::default()
        },
        RequestContext {
            namespace_agent: Some(String::new()),
            ..RequestContext::default()
        },
    ];
    // Twice over: the first pass fills the cache, the second answers from it.
    for _ in 0..2 {
        for principal in &principals {
            for action in Action::ALL {
                for resource in &resources {
                    for context in &contexts {
                        let request = AuthzRequest {
                            principal,
                            action,
                            resource,
                            context,
                        };
                        assert_eq!(
                            engine.authorize(&request),
                            engine.authorize_uncached(&request),
                            "{principal:?} {action} {resource:?} {context:?}"
                        );
                    }
                }
            }
        }
    }
    assert!(engine.current().decisions.len() > 0);
}

#[test]
fn a_cached_allow_is_not_reused_after_activation_or_trust_change() {
    let engine = engine();
    let context = RequestContext::default();
    let alice = alice();
    let internal = agent("acme.example", TrustLevel::Internal);
    let ask = |resource: &Resource| {
        engine
            .authorize(&AuthzRequest {
                principal: &alice,
                action: Action::SendMessage,
                resource,
                context: &context,
            })
            .allowed
    };
    let text = format!(
        "{EXAMPLE_POLICIES}\n@id(\"no-untrusted\") forbid (principal, action, resource is Agent) \
         when {{ resource.trust_rank < 1 }};"
    );
    engine.load(Some(2), &text).expect("valid");
    assert!(ask(&internal));
    assert!(ask(&internal), "answered from the cache");
    // The same agent after a trust change is another resource: decided
    // afresh, and the forbid on untrusted agents decides.
    assert!(!ask(&agent("acme.example", TrustLevel::Untrusted)));
    // An activation starts from an empty cache: the allow is gone at once.
    engine.load(Some(3), ADMIN_ONLY_POLICIES).expect("valid");
    assert_eq!(engine.current().decisions.len(), 0);
    assert!(!ask(&internal));
}

#[test]
fn decisions_depend_on_now_only_when_a_policy_mentions_it() {
    let engine = engine();
    let decide = |now: i64| {
        engine
            .authorize(&AuthzRequest {
                principal: &alice(),
                action: Action::SendMessage,
                resource: &agent("acme.example", TrustLevel::Internal),
                context: &RequestContext {
                    now,
                    ..RequestContext::default()
                },
            })
            .allowed
    };
    assert!(decide(1));
    assert!(decide(2));
    assert_eq!(
        engine.current().decisions.len(),
        1,
        "the shipped set never mentions now: one entry for both instants"
    );
    let text = format!(
        "{EXAMPLE_POLICIES}\n@id(\"curfew\") forbid (principal, action, resource) \
         when {{ context.now >= 100 }};"
    );
    engine.load(Some(2), &text).expect("valid");
    assert!(decide(99));
    assert!(!decide(100), "not the answer cached for 99");
}

#[test]
fn only_the_word_now_counts_as_a_mention() {
    let cases = [
        ("when { context.now < 5 }", true),
        ("when { context[\"now\"] < 5 }", true),
        ("now", true),
        ("// unknown to them", false),
        ("nowhere snow", false),
    ];
    for (text, expected) in cases {
        assert_eq!(mentions_now(text), expected, "{text}");
    }
}
