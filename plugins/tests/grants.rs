//! Capability grants (WAT compiled here with the `wat` crate): a module
//! importing `clock_ms`, `monotonic_ns`, `random` or `env` is refused at
//! load without the grant (naming it) and works with it; bad pointers and
//! lengths are answered with the documented negative codes, never a trap
//! or a panic.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use convergio_plugins::grants::{HOST_BAD_RANGE, HOST_NOT_SET, HOST_TOO_LONG};
use convergio_plugins::runtime::AGENT_EXPORT;
use convergio_plugins::{
    AgentCalling, Grant, Grants, PluginError, PluginRuntime, SandboxLimits, WasmAgent,
    WasmGuardrail,
};

const EXAMPLE: &[u8] = include_bytes!("../examples/keyword-guardrail.wasm");

/// A module with `imports`, one page of memory, an `alloc` handing out
/// 1024, `data`, and `body` as the `guard` function's body.
fn module(imports: &str, data: &str, body: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
            {imports}
            (memory (export "memory") 1)
            {data}
            (func (export "alloc") (param i32) (result i32) (i32.const 1024))
            (func (export "guard") (param $ptr i32) (param $len i32) (result i64) {body}))"#
    );
    wat::parse_str(&text).expect("the test's WAT is valid")
}

/// Stores the wall clock at 0 and the monotonic clock at 8.
fn clock_module() -> Vec<u8> {
    module(
        r#"(import "convergio" "clock_ms" (func $clock (result i64)))
           (import "convergio" "monotonic_ns" (func $monotonic (result i64)))"#,
        "",
        "(i64.store (i32.const 0) (call $clock))
         (i64.store (i32.const 8) (call $monotonic))
         (i64.const 16)",
    )
}

/// Fills 32 bytes at 64 and stores the answers of good and bad calls.
fn random_module() -> Vec<u8> {
    module(
        r#"(import "convergio" "random" (func $random (param i32 i32) (result i32)))"#,
        "",
        "(i32.store (i32.const 0) (call $random (i32.const 64) (i32.const 32)))
         (i32.store (i32.const 4) (call $random (i32.const -1) (i32.const 8)))
         (i32.store (i32.const 8) (call $random (i32.const 0) (i32.const -5)))
         (i32.store (i32.const 12) (call $random (i32.const 65530) (i32.const 100)))
         (i32.store (i32.const 16) (call $random (i32.const 0) (i32.const 70000)))
         (i32.store (i32.const 20) (call $random (i32.const 65528) (i32.const 8)))
         (i64.const 96)",
    )
}

/// Looks up `REGION`, `PATH` and bad ranges; answers its first 2 KiB.
fn env_module() -> Vec<u8> {
    module(
        r#"(import "convergio" "env" (func $env (param i32 i32) (result i64)))"#,
        r#"(data (i32.const 100) "REGION") (data (i32.const 120) "PATH")"#,
        "(i64.store (i32.const 0) (call $env (i32.const 100) (i32.const 6)))
         (i64.store (i32.const 8) (call $env (i32.const 120) (i32.const 4)))
         (i64.store (i32.const 16) (call $env (i32.const -1) (i32.const 6)))
         (i64.store (i32.const 24) (call $env (i32.const 65533) (i32.const 6)))
         (i64.store (i32.const 32) (call $env (i32.const 0) (i32.const 300)))
         (i64.const 2048)",
    )
}

fn runtime() -> PluginRuntime {
    PluginRuntime::new(SandboxLimits::default()).expect("the engine starts")
}

fn grants(list: &[Grant]) -> Grants {
    list.iter().copied().collect()
}

fn i32_at(bytes: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[test]
fn grantable_imports_are_refused_without_their_grant_naming_it() {
    let runtime = runtime();
    for (bytes, function, grant) in [
        (clock_module(), "clock_ms", Grant::Clock),
        (random_module(), "random", Grant::Random),
        (env_module(), "env", Grant::Env),
    ] {
        // No grant, or only the other grants: refused, naming the grant.
        let others: Grants = Grant::ALL
            .into_iter()
            .filter(|other| *other != grant)
            .collect();
        for held in [Grants::NONE, others] {
            let error = WasmGuardrail::load_granted(&runtime, "sneaky", &bytes, held)
                .expect_err("refused at load");
            let PluginError::ForbiddenImport {
                module,
                name,
                grant: missing,
                ..
            } = &error
            else {
                panic!("{function} with {held}: {error}");
            };
            assert_eq!((module.as_str(), name.as_str()), ("convergio", function));
            assert_eq!(*missing, Some(grant), "{error}");
            assert_eq!(error.code(), "FORBIDDEN_IMPORT");
            assert!(
                error
                    .to_string()
                    .contains(&format!("needs the grant {grant}")),
                "{error}"
            );
        }
        // The plain `load` grants nothing.
        assert!(matches!(
            WasmGuardrail::load(&runtime, "sneaky", &bytes),
            Err(PluginError::ForbiddenImport { .. })
        ));
        // With the grant it loads, as a guardrail and as an agent alike.
        runtime
            .load_granted("granted", &bytes, "guard", grants(&[grant]))
            .expect("loads with its grant");
    }
    // An agent importing the clock is refused the same way.
    let agent = wat::parse_str(
        r#"(module
            (import "convergio" "clock_ms" (func (result i64)))
            (memory (export "memory") 1)
            (func (export "alloc") (param i32) (result i32) (i32.const 1024))
            (func (export "handle") (param i32 i32) (result i64) (i64.const 0)))"#,
    )
    .expect("valid WAT");
    let error = WasmAgent::load(&runtime, "timer", &agent, AgentCalling::none())
        .expect_err("refused without the grant");
    assert!(
        matches!(
            error,
            PluginError::ForbiddenImport {
                grant: Some(Grant::Clock),
                ..
            }
        ),
        "{error}"
    );
    WasmAgent::load_granted(
        &runtime,
        "timer",
        &agent,
        AgentCalling::none(),
        grants(&[Grant::Clock]),
    )
    .expect("loads with the grant");
    assert!(runtime
        .load_granted("timer", &agent, AGENT_EXPORT, grants(&[Grant::Clock]))
        .is_ok());
    // The names are the `convergio` module's only: another module's
    // `clock_ms` is not provided whatever the grants.
    let elsewhere = module(
        r#"(import "env" "clock_ms" (func (result i64)))"#,
        "",
        "(i64.const 0)",
    );
    let error = WasmGuardrail::load_granted(&runtime, "elsewhere", &elsewhere, grants(&Grant::ALL))
        .expect_err("not a host function");
    assert!(
        matches!(error, PluginError::ForbiddenImport { grant: None, .. }),
        "{error}"
    );
}

#[test]
fn a_grant_the_module_does_not_use_is_harmless() {
    let runtime = runtime();
    let guardrail = WasmGuardrail::load_granted(&runtime, "keywords", EXAMPLE, grants(&Grant::ALL))
        .expect("loads with every grant");
    let facts = convergio_plugins::GuardFacts {
        direction: convergio_plugins::Direction::Request,
        agent: "echo",
        skill: None,
        org: None,
        subject: "alice",
        switched_on: &[],
    };
    let payload = serde_json::json!({"message": {"role": "ROLE_USER", "messageId": "m1", "parts": [{"text": "hello"}]}});
    assert_eq!(
        futures_executor::block_on(guardrail.guard(&facts, &payload)).expect("runs"),
        convergio_plugins::Verdict::Allow
    );
}

#[test]
fn the_clock_grant_reads_the_wall_and_monotonic_clocks() {
    let runtime = runtime();
    let loaded = runtime
        .load_granted("clock", &clock_module(), "guard", grants(&[Grant::Clock]))
        .expect("loads");
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    let answer = runtime
        .call_blocking(&loaded, "guard", b"{}")
        .expect("runs");
    let wall = i64_at(&answer, 0);
    let now = i128::try_from(before).expect("fits");
    assert!(
        (i128::from(wall) - now).abs() < 5_000,
        "clock_ms {wall} is not within 5 s of {now}"
    );
    let monotonic = i64_at(&answer, 8);
    // Since the call started, within the call's 100 ms deadline.
    assert!(
        (0..100_000_000).contains(&monotonic),
        "monotonic_ns {monotonic}"
    );
}

#[test]
fn the_random_grant_fills_memory_and_answers_bad_ranges() {
    let runtime = runtime();
    let loaded = runtime
        .load_granted("dice", &random_module(), "guard", grants(&[Grant::Random]))
        .expect("loads");
    let first = runtime
        .call_blocking(&loaded, "guard", b"{}")
        .expect("runs, bad calls answered rather than trapping");
    let second = runtime
        .call_blocking(&loaded, "guard", b"{}")
        .expect("runs");
    for answer in [&first, &second] {
        assert_eq!(i32_at(answer, 0), 0, "a good range fills");
        assert_eq!(i32_at(answer, 4), HOST_BAD_RANGE, "negative pointer");
        assert_eq!(i32_at(answer, 8), HOST_BAD_RANGE, "negative length");
        assert_eq!(i32_at(answer, 12), HOST_BAD_RANGE, "past the memory");
        assert_eq!(i32_at(answer, 16), HOST_TOO_LONG, "over 64 KiB");
        assert_eq!(i32_at(answer, 20), 0, "the memory's last bytes");
        assert_ne!(&answer[64..96], &[0_u8; 32], "bytes were written");
    }
    assert_ne!(
        &first[64..96],
        &second[64..96],
        "two calls draw different bytes"
    );
}

#[test]
fn the_env_grant_reads_the_configured_map_only() {
    // `PATH` is set in the process environment but not in the map: it is
    // not visible, the map is all a plugin reads.
    assert!(std::env::var_os("PATH").is_some());
    let runtime = runtime().with_env(BTreeMap::from([(
        "REGION".to_owned(),
        "eu-west-1".to_owned(),
    )]));
    let loaded = runtime
        .load_granted("where", &env_module(), "guard", grants(&[Grant::Env]))
        .expect("loads");
    let answer = runtime
        .call_blocking(&loaded, "guard", b"{}")
        .expect("runs, bad calls answered rather than trapping");
    let packed = i64_at(&answer, 0);
    assert!(packed > 0, "found: {packed}");
    let (pointer, length) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
    assert_eq!(&answer[pointer..pointer + length], b"eu-west-1");
    assert_eq!(
        i64_at(&answer, 8),
        i64::from(HOST_NOT_SET),
        "a name only the process has"
    );
    assert_eq!(
        i64_at(&answer, 16),
        i64::from(HOST_BAD_RANGE),
        "negative pointer"
    );
    assert_eq!(
        i64_at(&answer, 24),
        i64::from(HOST_BAD_RANGE),
        "past the memory"
    );
    assert_eq!(
        i64_at(&answer, 32),
        i64::from(HOST_TOO_LONG),
        "a name over 256 bytes"
    );
}
