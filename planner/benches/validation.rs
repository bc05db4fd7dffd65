//! Plan validation overhead (issue 19), excluding any planner agent's own
//! time: for plans of 10 and 100 steps over a registry of 10,000 agents,
//! what `POST /v1/plans` does per plan — look each step's agent up in the
//! registry (a map of 10,000 records, as the gateway's route cache), decide
//! `discover` then `send_message` for the caller with the shipped Cedar set
//! (the engine the gateway uses, its decision cache included), then
//! `check_plan` (schema, constraints, access, graph rules). Prints p50/p99
//! per size; the target is at most 5 ms p99 at 100 steps.
//!
//! Run: `cargo bench -p convergio-planner --bench validation`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use convergio_orchestrator::Limits;
use convergio_planner::{check_plan, Access, AccessMap, Constraints, PlanDocument, PlanStep};
use convergio_policy::{Action, AuthzRequest, PolicyEngine, RequestContext, Resource};
use convergio_schemas::{AgentId, AgentRole, AuthMethod, Principal, TrustLevel};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REGISTRY: usize = 10_000;

fn plan(steps: usize) -> PlanDocument {
    // Layers of 10 parallel steps; each step takes the previous layer's outputs.
    let steps = (0..steps)
        .map(|index| {
            let layer = index / 10;
            let inputs = if layer == 0 {
                vec!["source_code".to_owned()]
            } else {
                (0..10)
                    .map(|other| format!("s{}.output", (layer - 1) * 10 + other))
                    .collect()
            };
            PlanStep {
                id: format!("s{index}"),
                agent: format!("agent_{}", (index * 97) % REGISTRY),
                task: format!("step {index} of the benchmark plan"),
                inputs,
                after: Vec::new(),
            }
        })
        .collect();
    PlanDocument {
        goal: "benchmark".to_owned(),
        steps,
        rationale: vec!["generated".to_owned()],
        candidates: Vec::new(),
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// What the gateway does for one plan: lookups, two decisions per step,
/// then the check.
fn validate(
    plan: &PlanDocument,
    registry: &HashMap<String, Resource>,
    engine: &PolicyEngine,
    principal: &Principal,
    cached: bool,
) -> bool {
    let context = RequestContext {
        now: 1_767_225_600,
        loopback: false,
        ..RequestContext::default()
    };
    let mut access = AccessMap::new();
    for step in &plan.steps {
        let found = match registry.get(&step.agent) {
            None => Access::Unknown,
            Some(resource) => {
                let decide = |action| {
                    let request = AuthzRequest {
                        principal,
                        action,
                        resource,
                        context: &context,
                    };
                    if cached {
                        engine.authorize(&request).allowed
                    } else {
                        engine.authorize_uncached(&request).allowed
                    }
                };
                if !decide(Action::Discover) {
                    Access::Unknown
                } else if !decide(Action::SendMessage) {
                    Access::NotCallable
                } else {
                    Access::Callable(TrustLevel::Internal)
                }
            }
        };
        access.insert(step.agent.clone(), found);
    }
    check_plan(
        plan,
        "plan-bench",
        &Constraints::default(),
        &access,
        &Limits::default(),
    )
    .is_ok()
}

fn main() {
    let engine = PolicyEngine::with_defaults().expect("the shipped policy set loads");
    let registry: HashMap<String, Resource> = (0..REGISTRY)
        .map(|index| {
            let name = format!("agent_{index}");
            let resource = Resource::Agent {
                id: AgentId::internal(&name).expect("a valid name"),
                org: "acme.example".to_owned(),
                trust: TrustLevel::Internal,
                role: AgentRole::Worker,
                tags: vec!["code-review".to_owned()],
                opt_in_external: false,
            };
            (name, resource)
        })
        .collect();
    // An internal caller of the agents' organisation (internal-same-org).
    let principal = Principal {
        subject: "alice".to_owned(),
        org: Some("acme.example".to_owned()),
        scopes: vec!["graphs:run".to_owned()],
        method: AuthMethod::Jwt,
    };
    for cached in [true, false] {
        for size in [10, 100] {
            let plan = plan(size);
            let iterations = if size == 10 { 2_000 } else { 500 };
            for _ in 0..20 {
                assert!(validate(&plan, &registry, &engine, &principal, cached));
            }
            let mut times = Vec::with_capacity(iterations);
            for _ in 0..iterations {
                let start = Instant::now();
                let valid = validate(&plan, &registry, &engine, &principal, cached);
                times.push(start.elapsed());
                assert!(valid, "the benchmark plan validates");
            }
            times.sort();
            let p99 = percentile(&times, 0.99);
            println!(
                "plan validation ({} decisions), {size} steps over {REGISTRY} agents: p50 {:?}  p99 {:?}{}",
                if cached { "cached" } else { "uncached" },
                percentile(&times, 0.50),
                p99,
                if size == 100 {
                    format!(
                        "  (target p99 <= 5ms: {})",
                        if p99 <= Duration::from_millis(5) { "met" } else { "missed" }
                    )
                } else {
                    String::new()
                }
            );
        }
    }
}
