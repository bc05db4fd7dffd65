//! The policy index (slices by action, `resource ==`, `principal ==` and a
//! leading `context.caller_org ==`) must never change a decision: over
//! thousands of generated requests against a generated set with every kind
//! of slice, permits and forbids, the indexed and the whole-set decisions
//! (allowed, determining policies, errors) are identical.

use convergio_policy::engine::{DEFAULT_SCHEMA, EXAMPLE_POLICIES};
use convergio_policy::{Action, AuthzRequest, PolicyEngine, RequestContext, Resource};
use convergio_schemas::{AgentId, AgentRole, AuthMethod, Principal, TrustLevel};

const ORGS: [&str; 5] = [
    "acme.example",
    "org1.example",
    "org2.example",
    "org3.example",
    "",
];
const SUBJECTS: [&str; 4] = ["alice", "bob", "gw.partner.example", "svc"];
const AGENTS: [&str; 4] = ["echo", "translate", "payroll", "draft"];
const ACTIONS: [&str; 6] = [
    "discover",
    "read_card",
    "send_message",
    "stream",
    "get_task",
    "cancel_task",
];

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Generator(u64);

impl Generator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

fn generated_set(generator: &mut Generator) -> String {
    let mut text = EXAMPLE_POLICIES.to_owned();
    for index in 0..400 {
        let action = generator.pick(&ACTIONS);
        let effect = if index % 7 == 0 { "forbid" } else { "permit" };
        let org = generator.pick(&ORGS);
        let agent = generator.pick(&AGENTS);
        let subject = generator.pick(&SUBJECTS);
        let rank = generator.next() % 5;
        let policy = match index % 6 {
            // Scoped to one resource.
            0 => format!(
                "@id(\"r-{index}\") {effect} (principal, action == Action::\"{action}\", resource == Agent::\"convergio://agents/{agent}\") \
                 when {{ resource.trust_rank >= {rank} }};\n"
            ),
            // Scoped to one principal.
            1 => format!(
                "@id(\"p-{index}\") {effect} (principal == Principal::\"{subject}\", action == Action::\"{action}\", resource is Agent) \
                 when {{ resource.org == \"{org}\" }};\n"
            ),
            // A per-organisation grant (leading caller_org conjunct).
            2 => format!(
                "@id(\"o-{index}\") {effect} (principal, action == Action::\"{action}\", resource is Agent) \
                 when {{ context.caller_org == \"{org}\" && resource.trust_rank >= {rank} }};\n"
            ),
            // The literal first, and an unless clause.
            3 => format!(
                "@id(\"l-{index}\") {effect} (principal, action, resource is Agent) \
                 when {{ \"{org}\" == context.caller_org }} unless {{ resource.tags.contains(\"t{rank}\") }};\n"
            ),
            // caller_org not leading: must stay generic.
            4 => format!(
                "@id(\"g-{index}\") {effect} (principal, action in [Action::\"{action}\", Action::\"discover\"], resource is Agent) \
                 when {{ resource.trust_rank >= {rank} && context.caller_org == \"{org}\" }};\n"
            ),
            // Reads an optional attribute.
            _ => format!(
                "@id(\"e-{index}\") {effect} (principal, action == Action::\"{action}\", resource is Agent) \
                 when {{ context has skill && context.skill == \"s{rank}\" }};\n"
            ),
        };
        text.push_str(&policy);
    }
    text
}

fn random_request(generator: &mut Generator) -> (Principal, Action, Resource, RequestContext) {
    let org = *generator.pick(&ORGS);
    let principal = Principal {
        subject: (*generator.pick(&SUBJECTS)).to_owned(),
        org: (!org.is_empty()).then(|| org.to_owned()),
        scopes: if generator.next() % 5 == 0 {
            vec!["admin".to_owned()]
        } else {
            Vec::new()
        },
        method: *generator.pick(&[AuthMethod::Jwt, AuthMethod::Mtls, AuthMethod::Anonymous]),
    };
    let action = *generator.pick(&Action::ALL[..6]);
    let trust = *generator.pick(&[
        TrustLevel::Untrusted,
        TrustLevel::Registered,
        TrustLevel::Verified,
        TrustLevel::Trusted,
        TrustLevel::Internal,
    ]);
    let name = generator.pick(&AGENTS);
    let resource = Resource::Agent {
        id: AgentId::internal(name).expect("valid name"),
        org: (*generator.pick(&ORGS)).to_owned(),
        trust,
        role: AgentRole::Worker,
        tags: vec![format!("t{}", generator.next() % 5)],
        opt_in_external: generator.next() % 2 == 0,
    };
    let context = RequestContext {
        a2a_method: Some("SendMessage".to_owned()),
        skill: (generator.next() % 2 == 0).then(|| format!("s{}", generator.next() % 5)),
        graph_run: (generator.next() % 4 == 0).then(|| "run-1".to_owned()),
        now: 1_767_225_600,
        loopback: generator.next() % 2 == 0,
        namespace_agent: (generator.next() % 3 == 0).then(|| format!("a{}", generator.next() % 2)),
        ..RequestContext::default()
    };
    (principal, action, resource, context)
}

#[test]
fn indexed_decisions_equal_whole_set_decisions() {
    let mut generator = Generator(0x5eed_cafe_f00d_0001);
    let engine = PolicyEngine::new(DEFAULT_SCHEMA).expect("schema");
    engine
        .load(None, &generated_set(&mut generator))
        .expect("generated set validates");
    let mut allowed = 0;
    let mut forbidden = 0;
    for _ in 0..5_000 {
        let (principal, action, resource, context) = random_request(&mut generator);
        let request = AuthzRequest {
            principal: &principal,
            action,
            resource: &resource,
            context: &context,
        };
        let indexed = engine.authorize(&request);
        let whole = engine.authorize_unindexed(&request);
        assert_eq!(indexed, whole, "{request:?}");
        allowed += usize::from(whole.allowed);
        forbidden += usize::from(!whole.allowed && !whole.determining.is_empty());
    }
    // The generated requests exercise allows, forbids and default denies.
    assert!(allowed > 100, "allowed {allowed}");
    assert!(forbidden > 100, "forbidden {forbidden}");
}
