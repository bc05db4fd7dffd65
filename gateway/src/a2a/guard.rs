//! Guardrails on the A2A path (issue #21): [`GuardCall`] is what the
//! configured [`Guardrails`] know about one call (agent, skill, caller), and
//! [`apply`] runs them on one payload — the request's params after the
//! gatekeeper admitted the call and before the upstream, a unary result or
//! each streamed event before the caller. A refusal is audited (action
//! `guardrail`) and becomes [`GatewayError::GuardrailDenied`].
//!
//! With no guardrail configured, or none selected for the call, a payload
//! passes untouched without a copy. Chains run on the event loop: a
//! sandboxed plugin runs on a fiber that yields at every epoch tick, so one
//! spinning to its deadline holds the thread a tick at a time.

use convergio_plugins::chain::Outcome;
use convergio_plugins::{Direction, GuardFacts, Guardrails};
use serde_json::{json, Value};

use super::inbound::Call;
use super::{A2aState, Incoming};
use crate::authorize::GuardQuestion;
use crate::layers::RequestId;
use crate::routes::RouteTarget;
use crate::{GatewayError, Principal};

/// The facts of one call the guardrails select on, owned so a blocking
/// thread can take them.
#[derive(Debug, Clone)]
pub(crate) struct GuardCall {
    agent: String,
    skill: Option<String>,
    principal: Principal,
    request_id: Option<RequestId>,
    /// The `by_policy` rules policy switched on, for requests and for
    /// responses: asked once per call, not per streamed event.
    switched_on: [Vec<String>; 2],
}

// === impl GuardCall ===

impl GuardCall {
    /// The facts of `call` to `target` by `request`'s principal, with the
    /// guardrail rules left to policy decided (`apply_guardrail`).
    pub(crate) fn new(
        state: &A2aState,
        target: &RouteTarget,
        call: &Call,
        request: &Incoming,
    ) -> Self {
        let guardrails: &Guardrails = &state.guardrails;
        let mut guard = Self {
            agent: target.name.clone(),
            // Only guardrails read it: a deployment without any skips the
            // walk through the message (issue #25).
            skill: if guardrails.is_empty() {
                None
            } else {
                crate::authorize::message_skill(call.params())
            },
            principal: request.principal.clone(),
            request_id: request.request_id.clone(),
            switched_on: Default::default(),
        };
        if guardrails.is_empty() {
            return guard;
        }
        for direction in [Direction::Request, Direction::Response] {
            let switched: Vec<String> = state
                .guardrails
                .left_to_policy(&guard.facts(direction))
                .into_iter()
                .filter(|guardrail| {
                    state.gatekeeper.may_apply_guardrail(
                        &guard.principal,
                        target,
                        &GuardQuestion {
                            guardrail,
                            direction: direction.as_str(),
                            method: call.method.v1_name(),
                            skill: guard.skill.as_deref(),
                            loopback: request.loopback,
                        },
                    )
                })
                .map(str::to_owned)
                .collect();
            guard.switched_on[slot(direction)] = switched;
        }
        guard
    }

    fn facts(&self, direction: Direction) -> GuardFacts<'_> {
        GuardFacts {
            direction,
            agent: &self.agent,
            skill: self.skill.as_deref(),
            org: self.principal.org.as_deref(),
            subject: &self.principal.subject,
            switched_on: &self.switched_on[slot(direction)],
        }
    }
}

/// Where [`GuardCall::switched_on`] keeps `direction`'s rules.
fn slot(direction: Direction) -> usize {
    match direction {
        Direction::Request => 0,
        Direction::Response => 1,
    }
}

/// Whether any guardrail runs on `call`'s payloads in `direction` (when
/// none does, a result may pass through as the upstream's bytes).
pub(crate) fn selects(state: &A2aState, call: &GuardCall, direction: Direction) -> bool {
    let guardrails: &Guardrails = &state.guardrails;
    !guardrails.is_empty() && guardrails.selects(&call.facts(direction))
}

/// Runs the guardrails selected for `call` and `direction` on `payload`:
/// the payload to pass on (changed or not), or the refusal.
pub(crate) async fn apply(
    state: &A2aState,
    call: &GuardCall,
    direction: Direction,
    payload: Value,
) -> Result<Value, GatewayError> {
    if !selects(state, call, direction) {
        return Ok(payload);
    }
    let guardrails: &Guardrails = &state.guardrails;
    // Plugins run on fibers that yield at every epoch tick, so even one
    // spinning to its deadline holds this thread for a tick at a time.
    let outcome = guardrails.check(&call.facts(direction), &payload).await;
    match outcome {
        Outcome::Unchanged => Ok(payload),
        Outcome::Modified(changed) => Ok(changed),
        Outcome::Denied(denial) => {
            if let Some(failure) = &denial.failure {
                tracing::warn!(
                    request_id = call.request_id.as_ref().map(RequestId::as_str).unwrap_or("-"),
                    guardrail = %denial.guardrail,
                    error = %failure,
                    "a guardrail failed; the payload is refused"
                );
            }
            state
                .gatekeeper
                .record_guardrail(
                    &call.principal,
                    &call.agent,
                    call.request_id.as_ref(),
                    json!({
                        "guardrail": denial.guardrail,
                        "reason": denial.reason,
                        "direction": direction.as_str(),
                        "skill": call.skill,
                    }),
                )
                .await;
            Err(GatewayError::GuardrailDenied {
                guardrail: denial.guardrail,
                reason: denial.reason,
                message: denial.message,
                direction: direction.as_str(),
            })
        }
    }
}
