//! Decision latency: p50/p99 per `authorize` call with the example policy set
//! and with 1,000 generated policies (target p99 ≤ 50 µs), indexed (what the
//! gateway uses) and against the whole set (the reference), printed side by
//! side. Run with `cargo bench -p convergio-policy --bench authorize`.

use std::time::{Duration, Instant};

use convergio_policy::engine::{DEFAULT_SCHEMA, EXAMPLE_POLICIES};
use convergio_policy::{Action, AuthzRequest, PolicyEngine, RequestContext, Resource};
use convergio_schemas::{AgentId, AgentRole, AuthMethod, Principal, TrustLevel};

const ITERATIONS: usize = 20_000;

/// 1,000 policies in the shape a large deployment has: per-organisation
/// grants over different actions and attribute conditions, plus the
/// example set.
fn generated_policies(count: usize) -> String {
    let actions = [
        "discover",
        "read_card",
        "send_message",
        "stream",
        "get_task",
        "cancel_task",
        "register_agent",
        "update_agent",
        "set_trust",
        "run_graph",
    ];
    let mut text = EXAMPLE_POLICIES.to_owned();
    for index in 0..count {
        let action = actions[index % actions.len()];
        let policy = if action == "run_graph" {
            format!(
                "@id(\"gen-{index}\") permit (principal, action == Action::\"run_graph\", resource is Graph) \
                 when {{ context.caller_org == \"org{index}.example\" }};\n"
            )
        } else {
            format!(
                "@id(\"gen-{index}\") permit (principal, action == Action::\"{action}\", resource is Agent) \
                 when {{ context.caller_org == \"org{index}.example\" && resource.trust_rank >= {} && resource.tags.contains(\"t{}\") }};\n",
                index % 5,
                index % 17
            )
        };
        text.push_str(&policy);
    }
    text
}

fn measure(engine: &PolicyEngine, indexed: bool) -> (Duration, Duration, usize) {
    let principal = Principal {
        subject: "gw.partner.example".to_owned(),
        org: Some("org3.example".to_owned()),
        scopes: vec!["graphs:run".to_owned()],
        method: AuthMethod::Mtls,
    };
    let resource = Resource::Agent {
        id: AgentId::internal("translate").expect("valid name"),
        org: "acme.example".to_owned(),
        trust: TrustLevel::Verified,
        role: AgentRole::Worker,
        tags: vec!["t3".to_owned(), "public".to_owned()],
        opt_in_external: true,
    };
    let context = RequestContext {
        a2a_method: Some("SendMessage".to_owned()),
        skill: Some("translate".to_owned()),
        graph_run: None,
        now: 1_767_225_600,
        loopback: false,
        namespace_agent: None,
    };
    let mut samples = Vec::with_capacity(ITERATIONS);
    let mut allowed = 0;
    for index in 0..ITERATIONS + 1_000 {
        let request = AuthzRequest {
            principal: &principal,
            action: Action::ALL[index % 6],
            resource: &resource,
            context: &context,
        };
        let start = Instant::now();
        let decision = if indexed {
            engine.authorize(&request)
        } else {
            engine.authorize_unindexed(&request)
        };
        let elapsed = start.elapsed();
        if index >= 1_000 {
            samples.push(elapsed);
            allowed += usize::from(decision.allowed);
        }
    }
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100];
    (p50, p99, allowed)
}

fn main() {
    let example = PolicyEngine::with_defaults().expect("shipped policies are valid");
    let large = PolicyEngine::new(DEFAULT_SCHEMA).expect("schema is valid");
    large
        .load(None, &generated_policies(1_000))
        .expect("generated policies are valid");
    let (example_p50, example_p99, example_allowed) = measure(&example, true);
    let (large_p50, large_p99, large_allowed) = measure(&large, true);
    let (whole_p50, whole_p99, whole_allowed) = measure(&large, false);
    println!("authorize decision latency ({ITERATIONS} decisions each)");
    println!(
        "{:<22} {:>12} {:>16} {:>16}",
        "", "example set", "1,000 (indexed)", "1,000 (whole set)"
    );
    println!(
        "{:<22} {:>12.1?} {:>16.1?} {:>16.1?}",
        "p50", example_p50, large_p50, whole_p50
    );
    println!(
        "{:<22} {:>12.1?} {:>16.1?} {:>16.1?}",
        "p99", example_p99, large_p99, whole_p99
    );
    println!(
        "{:<22} {:>12} {:>16} {:>16}",
        "allowed", example_allowed, large_allowed, whole_allowed
    );
    let target = Duration::from_micros(50);
    println!(
        "target p99 <= 50 µs at 1,000 policies: {}",
        if large_p99 <= target {
            "met"
        } else {
            "NOT met"
        }
    );
}
