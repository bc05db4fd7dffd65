//! Plugin agents calling other agents through `convergio.call_agent`
//! (issue 21), with a recording caller standing in for the gateway: the
//! request read from the module's memory, the answer written back through
//! its `alloc`, bad pointers and lengths answered `BAD_REQUEST` (never a
//! panic), the per-message call count and budget, the time spent waiting
//! not charged to the sandbox's deadline, and guardrails refused the import.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use convergio_plugins::{
    AgentAnswer, AgentCall, AgentCallError, AgentCallLimits, AgentCaller, AgentCalling,
    PluginError, PluginRuntime, SandboxLimits, WasmAgent, WasmGuardrail,
};
use serde_json::{json, Value};

/// The calling agent's WAT template (shared with the CLI's tests).
const CALLING_AGENT: &str = include_str!("fixtures/calling-agent.wat");

/// The calling agent passing `call_agent` (`ptr`, `len`) over memory
/// holding `request` at 0, `times` times.
fn calling_agent_at(request: &str, ptr: i64, len: i64, times: u32) -> Vec<u8> {
    let text = CALLING_AGENT
        .replace(
            "REQUEST",
            &request.replace('\\', "\\\\").replace('"', "\\\""),
        )
        .replace("REQ_PTR", &ptr.to_string())
        .replace("REQ_LEN", &len.to_string())
        .replace("TIMES", &times.to_string());
    wat::parse_str(text).expect("the WAT compiles")
}

fn calling_agent(request: &str, times: u32) -> Vec<u8> {
    calling_agent_at(request, 0, request.len() as i64, times)
}

type Answer = dyn Fn(&AgentCall) -> Result<Value, AgentCallError> + Send + Sync;

/// A caller recording every call and answering with `answer`.
struct Recorder {
    calls: Mutex<Vec<AgentCall>>,
    answer: Box<Answer>,
}

impl Recorder {
    fn new(
        answer: impl Fn(&AgentCall) -> Result<Value, AgentCallError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            calls: Mutex::new(Vec::new()),
            answer: Box::new(answer),
        })
    }

    fn calls(&self) -> Vec<AgentCall> {
        self.calls.lock().expect("not poisoned").clone()
    }
}

#[async_trait::async_trait]
impl AgentCaller for Recorder {
    async fn call_agent(&self, call: AgentCall) -> Result<Value, AgentCallError> {
        let answer = (self.answer)(&call);
        self.calls.lock().expect("not poisoned").push(call);
        answer
    }
}

fn message() -> Value {
    json!({"role": "ROLE_USER", "messageId": "m1", "parts": [{"text": "go"}]})
}

/// Runs `module` once as the agent `caller` with `recorder` and `limits`,
/// answering what `call_agent` answered its last call.
fn run(
    runtime: &PluginRuntime,
    module: &[u8],
    recorder: Arc<Recorder>,
    limits: AgentCallLimits,
) -> Result<Value, PluginError> {
    let agent = WasmAgent::load(
        runtime,
        "caller",
        module,
        AgentCalling::new(recorder, limits),
    )?;
    match futures_executor::block_on(agent.handle(&message(), "c1", "t1"))? {
        AgentAnswer::Parts(parts) => Ok(parts[0]["data"].clone()),
        other => panic!("not parts: {other:?}"),
    }
}

fn echo_reply(call: &AgentCall) -> Result<Value, AgentCallError> {
    Ok(
        json!({"message": {"role": "ROLE_AGENT", "messageId": "r1", "parts": call.message["parts"].clone()}}),
    )
}

#[test]
fn a_plugin_agent_calls_through_its_caller_and_reads_the_answer() {
    let runtime = PluginRuntime::new(SandboxLimits::default()).expect("the engine starts");
    let recorder = Recorder::new(echo_reply);
    let module = calling_agent(r#"{"agent":"echo","text":"ping from wasm"}"#, 1);
    let answer = run(
        &runtime,
        &module,
        recorder.clone(),
        AgentCallLimits::default(),
    )
    .expect("runs");
    assert_eq!(
        answer,
        json!({"result": {"message": {"role": "ROLE_AGENT", "messageId": "r1", "parts": [{"text": "ping from wasm"}]}}})
    );
    let calls = recorder.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].agent, "echo");
    assert_eq!(calls[0].task_id, "t1");
    assert_eq!(
        calls[0].message,
        json!({"messageId": "t1-call-0", "role": "ROLE_USER", "parts": [{"text": "ping from wasm"}]})
    );
    assert_eq!(calls[0].timeout, Duration::from_secs(20));
    assert_eq!(calls[0].max_reply_bytes, 1024 * 1024);

    // The caller's refusals reach the module with their code.
    let refusing = Recorder::new(|_| {
        Err(AgentCallError::Refused {
            reason: "policy says no".into(),
        })
    });
    let answer = run(&runtime, &module, refusing, AgentCallLimits::default()).expect("runs");
    assert_eq!(answer["error"]["code"], "REFUSED", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("policy says no")),
        "{answer}"
    );
}

#[test]
fn bad_pointers_and_requests_are_answered_bad_request_never_a_panic() {
    let runtime = PluginRuntime::new(SandboxLimits::default()).expect("the engine starts");
    let request = r#"{"agent":"echo","text":"hi"}"#;
    let check = |module: Vec<u8>, expected: &str| {
        let recorder = Recorder::new(echo_reply);
        let answer = run(
            &runtime,
            &module,
            recorder.clone(),
            AgentCallLimits {
                max_request_bytes: 4096,
                ..AgentCallLimits::default()
            },
        )
        .expect("the module runs to its end");
        assert_eq!(answer["error"]["code"], "BAD_REQUEST", "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|message| message.contains(expected)),
            "{expected}: {answer}"
        );
        assert!(recorder.calls().is_empty(), "no call was made");
    };
    check(calling_agent_at(request, -1, 10, 1), "negative pointer");
    check(calling_agent_at(request, 0, -5, 1), "negative pointer");
    check(calling_agent_at(request, 65_000, 1_000, 1), "outside");
    check(
        calling_agent_at(request, 0, 5_000, 1),
        "over the limit of 4096",
    );
    check(calling_agent("not json", 1), "not {");
    check(
        calling_agent(r#"{"agent":"echo"}"#, 1),
        "either a message or a text",
    );
    check(
        calling_agent(r#"{"text":"hi"}"#, 1),
        "missing field `agent`",
    );
}

#[test]
fn calls_past_the_per_message_bound_are_refused() {
    let runtime = PluginRuntime::new(SandboxLimits::default()).expect("the engine starts");
    let recorder = Recorder::new(echo_reply);
    let module = calling_agent(r#"{"agent":"echo","text":"again"}"#, 5);
    let answer = run(
        &runtime,
        &module,
        recorder.clone(),
        AgentCallLimits {
            max_calls: 3,
            ..AgentCallLimits::default()
        },
    )
    .expect("runs");
    assert_eq!(answer["error"]["code"], "REFUSED", "{answer}");
    assert!(answer.to_string().contains("at most 3"), "{answer}");
    assert_eq!(recorder.calls().len(), 3);
    let ids: Vec<Value> = recorder
        .calls()
        .iter()
        .map(|call| call.message["messageId"].clone())
        .collect();
    assert_eq!(
        ids,
        [json!("t1-call-0"), json!("t1-call-1"), json!("t1-call-2")]
    );
}

#[test]
fn waiting_for_agents_is_not_charged_to_the_deadline_and_the_budget_bounds_it() {
    // A 40 ms deadline for the module's own running time; each call waits
    // 100 ms (or what it is given, if less, then times out).
    let runtime = PluginRuntime::new(SandboxLimits {
        deadline_ms: 40,
        ..SandboxLimits::default()
    })
    .expect("the engine starts");
    let slow = || {
        Recorder::new(|call| {
            let wait = Duration::from_millis(100);
            if call.timeout < wait {
                std::thread::sleep(call.timeout);
                return Err(AgentCallError::Timeout {
                    timeout_ms: call.timeout.as_millis() as u64,
                });
            }
            std::thread::sleep(wait);
            echo_reply(call)
        })
    };
    let module = calling_agent(r#"{"agent":"slow","text":"take your time"}"#, 3);

    // Three calls of 100 ms each, far past the 40 ms deadline: the module
    // is not interrupted.
    let started = Instant::now();
    let recorder = slow();
    let answer = run(
        &runtime,
        &module,
        recorder.clone(),
        AgentCallLimits::default(),
    )
    .expect("waiting is not charged to the deadline");
    assert!(answer.get("result").is_some(), "{answer}");
    assert_eq!(recorder.calls().len(), 3);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A budget of 150 ms: the first call has it all, the second what is
    // left (about 50 ms) and times out, the third finds it spent.
    let recorder = slow();
    let started = Instant::now();
    let answer = run(
        &runtime,
        &module,
        recorder.clone(),
        AgentCallLimits {
            timeout_ms: 150,
            ..AgentCallLimits::default()
        },
    )
    .expect("runs");
    let elapsed = started.elapsed();
    assert_eq!(answer["error"]["code"], "TIMEOUT", "{answer}");
    assert!(answer.to_string().contains("150 ms is spent"), "{answer}");
    let calls = recorder.calls();
    assert_eq!(calls.len(), 2, "the third call is never made");
    assert_eq!(calls[0].timeout, Duration::from_millis(150));
    assert!(
        calls[1].timeout <= Duration::from_millis(50),
        "{:?}",
        calls[1].timeout
    );
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    // The deadline still bounds the module's own running time.
    let spinning = wat::parse_str(
        r#"(module
          (import "convergio" "call_agent" (func $call (param i32 i32) (result i64)))
          (memory (export "memory") 1)
          (data (i32.const 0) "{\"agent\":\"slow\",\"text\":\"x\"}")
          (func (export "alloc") (param i32) (result i32) (i32.const 4096))
          (func (export "handle") (param i32 i32) (result i64)
            (drop (call $call (i32.const 0) (i32.const 27)))
            (loop $forever (br $forever))
            (i64.const 0)))"#,
    )
    .expect("the WAT compiles");
    let error = run(&runtime, &spinning, slow(), AgentCallLimits::default())
        .expect_err("spinning after the call");
    assert!(
        matches!(
            error,
            PluginError::DeadlineExceeded { .. } | PluginError::OutOfFuel { .. }
        ),
        "{error}"
    );
}

#[test]
fn a_guardrail_importing_call_agent_is_refused_when_loaded() {
    let runtime = PluginRuntime::new(SandboxLimits::default()).expect("the engine starts");
    let guardrail = wat::parse_str(
        r#"(module
          (import "convergio" "call_agent" (func (param i32 i32) (result i64)))
          (memory (export "memory") 1)
          (func (export "alloc") (param i32) (result i32) (i32.const 0))
          (func (export "guard") (param i32 i32) (result i64) (i64.const 0)))"#,
    )
    .expect("the WAT compiles");
    let error = WasmGuardrail::load(&runtime, "nosy", &guardrail).expect_err("refused");
    assert_eq!(error.code(), "FORBIDDEN_IMPORT", "{error}");
    assert!(
        error.to_string().contains("convergio::call_agent"),
        "{error}"
    );
}

#[test]
fn an_agent_without_a_caller_is_refused_its_calls() {
    let runtime = PluginRuntime::new(SandboxLimits::default()).expect("the engine starts");
    let module = calling_agent(r#"{"agent":"echo","text":"hi"}"#, 1);
    let agent = WasmAgent::load(&runtime, "caller", &module, AgentCalling::none()).expect("loads");
    let AgentAnswer::Parts(parts) =
        futures_executor::block_on(agent.handle(&message(), "c1", "t1")).expect("runs")
    else {
        panic!("not parts")
    };
    assert_eq!(parts[0]["data"]["error"]["code"], "REFUSED", "{parts:?}");
}

#[test]
fn an_alloc_pointing_outside_memory_traps_clearly() {
    let runtime = PluginRuntime::new(SandboxLimits::default()).expect("the engine starts");
    // `alloc` hands out 4096 once (the input), then a pointer past the end
    // of its memory (where the host would write the call's answer).
    let module = wat::parse_str(
        r#"(module
          (import "convergio" "call_agent" (func $call (param i32 i32) (result i64)))
          (memory (export "memory") 1)
          (global $calls (mut i32) (i32.const 0))
          (data (i32.const 0) "{\"agent\":\"echo\",\"text\":\"x\"}")
          (func (export "alloc") (param i32) (result i32)
            (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
            (if (result i32) (i32.eq (global.get $calls) (i32.const 1))
              (then (i32.const 4096))
              (else (i32.const 0x7fff0000))))
          (func (export "handle") (param i32 i32) (result i64)
            (call $call (i32.const 0) (i32.const 27))))"#,
    )
    .expect("the WAT compiles");
    let recorder = Recorder::new(echo_reply);
    let error = run(&runtime, &module, recorder, AgentCallLimits::default()).expect_err("traps");
    assert_eq!(error.code(), "TRAP", "{error}");
    assert!(
        error.to_string().contains("outside the module's memory"),
        "{error}"
    );
}
