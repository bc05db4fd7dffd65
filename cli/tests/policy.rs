//! `convergio policy` and `convergio audit` for real: the binary serves with
//! the embedded example policies, the CLI validates and tests policy files
//! offline, applies a set that denies a call the tour makes, sees the call
//! denied, rolls back, and reads and verifies the audit chain (issue #5).

mod support;

use serde_json::{json, Value};
use support::{cli, start, Server};

async fn send_to_echo(server: &Server) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/agents/echo", server.base))
        .header("A2A-Version", "1.0")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
            "message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hello"}]}}}),
        )
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

#[test]
fn policy_files_are_validated_and_tested_offline() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let (ok, stdout, stderr) = cli(
        None,
        &[
            "policy",
            "validate",
            &format!("{root}/policies/example.cedar"),
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("valid"), "{stdout}");
    let (ok, stdout, stderr) = cli(None, &["policy", "test", &format!("{root}/policies/tests")]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("0 failed"), "{stdout}");

    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.cedar");
    std::fs::write(
        &bad,
        "permit (principal, action, resource)\nwhen { context.nope };\n",
    )
    .expect("write");
    let (ok, _, stderr) = cli(None, &["policy", "validate", bad.to_str().expect("utf-8")]);
    assert!(!ok);
    assert!(stderr.contains("bad.cedar:2:"), "line and column: {stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn applied_policy_denies_a_call_and_rollback_restores_it() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    let at = Some((&server, data_dir.path()));

    // The embedded default lets the tour's anonymous loopback caller in.
    let (status, reply) = send_to_echo(&server).await;
    assert_eq!(status, 200, "{reply}");

    // A set without the tour policy: anonymous callers still see internal
    // agents, so the call is forbidden (403), not hidden.
    let strict = data_dir.path().join("strict.cedar");
    std::fs::write(
        &strict,
        "@id(\"admin-all\") permit (principal, action, resource) when { context.scopes.contains(\"admin\") };\n\
         @id(\"anonymous-internal-cards\") permit (principal, action in [Action::\"discover\", Action::\"read_card\"], resource is Agent)\n\
         when { context.auth_method == \"anonymous\" && resource.trust == \"internal\" };\n\
         @id(\"acme-strict-pii\") permit (principal, action == Action::\"apply_guardrail\", resource is Agent)\n\
         when { context has guardrail && context.guardrail == \"strict-pii\" && context.caller_org == \"acme.example\" };\n",
    )
    .expect("write");
    let strict_path = strict.to_str().expect("utf-8");
    let (ok, stdout, stderr) = cli(at, &["policy", "diff", strict_path]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("-@id(\"tour-loopback-anonymous\")"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = cli(
        at,
        &[
            "policy",
            "apply",
            strict_path,
            "--reason",
            "no anonymous calls",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("version 2"), "{stdout}");

    let (status, reply) = send_to_echo(&server).await;
    assert_eq!(status, 403, "{reply}");
    assert_eq!(reply["error"]["data"][0]["reason"], "PERMISSION_DENIED");

    let anonymous = r#"{"subject":"anonymous","org":null,"scopes":[],"method":"anonymous"}"#;
    let echo = r#"{"type":"agent","id":"convergio://agents/echo","org":"convergio.local","trust":"internal"}"#;
    let (ok, stdout, stderr) = cli(
        at,
        &[
            "policy",
            "check",
            "--principal",
            anonymous,
            "--action",
            "send_message",
            "--resource",
            echo,
            "--context",
            r#"{"loopback":true}"#,
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("deny"), "{stdout}");

    // Where a guardrail rule left to policy (`by_policy`) runs is a policy
    // decision like any other, shown by `policy check` (issue 21).
    for (principal, expected) in [
        ("alice@acme.example", "allow"),
        ("bob@other.example", "deny"),
    ] {
        let (ok, stdout, stderr) = cli(
            at,
            &[
                "policy",
                "check",
                "--principal",
                principal,
                "--action",
                "apply_guardrail",
                "--resource",
                echo,
                "--context",
                r#"{"guardrail":"strict-pii","direction":"response"}"#,
            ],
        );
        assert!(ok, "{stderr}");
        assert!(stdout.starts_with(expected), "{principal}: {stdout}");
        if expected == "allow" {
            assert!(stdout.contains("acme-strict-pii"), "{stdout}");
        }
    }

    let (ok, stdout, stderr) = cli(at, &["policy", "show"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("no anonymous calls"), "{stdout}");

    // One call restores the embedded default.
    let (ok, stdout, stderr) = cli(at, &["policy", "rollback", "1", "--reason", "undo"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("version 3"), "{stdout}");
    let (status, _) = send_to_echo(&server).await;
    assert_eq!(status, 200);

    // The denial and the policy changes are in a chain that verifies.
    let (ok, stdout, stderr) = cli(
        at,
        &[
            "audit",
            "list",
            "--decision",
            "deny",
            "--action",
            "send_message",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("agent:convergio://agents/echo"), "{stdout}");
    let (ok, stdout, stderr) = cli(at, &["audit", "list", "--action", "policy.put"]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout
            .lines()
            .filter(|line| line.contains("policy.put"))
            .count(),
        3,
        "{stdout}"
    );
    // The example agents' start-up registrations are registry changes too.
    let (ok, stdout, stderr) = cli(at, &["audit", "list", "--action", "agent.register"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("convergio://agents/echo"), "{stdout}");
    let (ok, stdout, stderr) = cli(at, &["audit", "verify"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("audit chain intact"), "{stdout}");

    // A bad apply changes nothing.
    let (ok, _, stderr) = cli(
        at,
        &["policy", "rollback", "99", "--reason", "no such version"],
    );
    assert!(!ok);
    assert!(stderr.contains("404"), "{stderr}");
}
