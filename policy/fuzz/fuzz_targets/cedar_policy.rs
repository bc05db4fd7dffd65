//! Policy sets as an administrator submits them (`PUT /v1/policies`):
//! any text gives a validated set or located diagnostics, never a panic;
//! a set that validates is installed, and then its indexed decisions agree
//! with deciding over the whole set for a fixed spread of requests.

#![no_main]

use std::sync::OnceLock;

use convergio_policy::engine::DEFAULT_SCHEMA;
use convergio_policy::{Action, AuthzRequest, PolicyEngine, RequestContext, Resource};
use convergio_schemas::{AgentId, AgentRole, AuthMethod, Principal, TrustLevel};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    engine: PolicyEngine,
    requests: Vec<(Principal, Action, Resource, RequestContext)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let engine = PolicyEngine::new(DEFAULT_SCHEMA).expect("the shipped schema parses");
        let principal = |subject: &str, org: Option<&str>, method| Principal {
            subject: subject.to_owned(),
            org: org.map(str::to_owned),
            scopes: vec!["admin".to_owned()],
            method,
        };
        let agent = Resource::Agent {
            id: "convergio://agents/echo"
                .parse::<AgentId>()
                .expect("a valid agent id"),
            org: "acme.example".to_owned(),
            trust: TrustLevel::Verified,
            role: AgentRole::default(),
            tags: vec!["t1".to_owned()],
            opt_in_external: false,
        };
        let context = RequestContext {
            a2a_method: Some("SendMessage".to_owned()),
            loopback: true,
            ..RequestContext::default()
        };
        let mut requests = Vec::new();
        for principal in [
            principal("alice", Some("acme.example"), AuthMethod::Jwt),
            principal(
                "gw.partner.example",
                Some("partner.example"),
                AuthMethod::Peer,
            ),
            principal("admin", None, AuthMethod::AdminToken),
        ] {
            for action in Action::ALL {
                for resource in [agent.clone(), Resource::Policy, Resource::System] {
                    requests.push((principal.clone(), action, resource, context.clone()));
                }
            }
        }
        Fixture { engine, requests }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let fixture = fixture();
    let Ok(set) = fixture.engine.validate(text) else {
        return;
    };
    let _ = fixture.engine.keeps_an_administrator(&set);
    fixture.engine.install(None, text, &set);
    for (principal, action, resource, context) in &fixture.requests {
        let request = AuthzRequest {
            principal,
            action: *action,
            resource,
            context,
        };
        assert_eq!(
            fixture.engine.authorize(&request),
            fixture.engine.authorize_unindexed(&request),
            "the index changed a decision for {action} on {}",
            resource.describe()
        );
    }
});
