//! Plans end to end (issue 19), with the real binary, the shipped example
//! agents and, for planner agents, the project's fake OpenAI-compatible
//! provider on loopback (the provider is the outside internet; everything
//! else is real):
//! - `convergio plan "review this code …" --execute`: the built-in
//!   deterministic planner's plan over the example agents validates and
//!   runs to a successful end;
//! - review: `:execute` with `review: true` waits; an edited plan approved
//!   is the one that runs; a rejected plan never runs; an edit naming an
//!   agent the caller may not call is refused, naming the step;
//! - a model-agent planner: a valid plan runs; an invalid plan is corrected
//!   after feedback; one that stays invalid fails with its errors; a plan
//!   naming an agent the caller may not call is refused before any node
//!   runs.

mod support;

use std::path::Path;

use convergio_models::fake::{FakeOpenAi, FakeProvider, FakeReply};
use convergio_models::Usage;
use serde_json::{json, Value};
use support::{set_secret, start, start_logged, Server};

const GOAL: &str = "review this code for security and style problems and write a report";
const CODE: &str = "import os\ndef run(cmd):\n    password = \"hunter2\"\n    os.system(cmd)\n";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A POST as the anonymous caller on this machine (the README tour's
/// policies): status and JSON body.
async fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", server.base))
        .json(body)
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(server: &Server, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", server.base))
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn agents_of(plan: &Value) -> Vec<String> {
    plan["document"]["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .filter_map(|step| step["agent"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_deterministic_planner_plans_the_review_goal_and_the_plan_runs() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    let code = data_dir.path().join("code.py");
    std::fs::write(&code, CODE).expect("writes the code");
    let (ok, stdout, stderr) = support::cli(
        Some((&server, data_dir.path())),
        &[
            "plan",
            GOAL,
            "--tag",
            "code-review",
            "--first-input",
            "source_code",
            "--execute",
            "--input",
            &format!("source_code=@{}", code.display()),
        ],
    );
    assert!(ok, "{stdout}\n{stderr}");
    // The readable list, in run order, then the graph it ran.
    let security = stdout.find("[security_expert]").expect("security step");
    let style = stdout.find("[style_checker]").expect("style step");
    let report = stdout.find("[report_generator]").expect("report step");
    assert!(security < report && style < report, "{stdout}");
    assert!(!stdout.contains("[performance_expert]"), "{stdout}");
    assert!(stdout.contains("Why:"), "{stdout}");
    assert!(
        stdout.contains("Graph:") && stdout.contains("nodes:"),
        "{stdout}"
    );
    // The run's result: the report, with the findings of both reviewers.
    assert!(stdout.contains("# Code review report"), "{stdout}");
    assert!(stdout.contains("security/hardcoded-secret"), "{stdout}");
    assert!(
        stderr.contains("plan ") && stderr.contains("run "),
        "{stderr}"
    );
}

#[test]
fn review_waits_runs_the_edited_plan_and_a_rejected_plan_never_runs() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    runtime().block_on(async {
        let request = json!({
            "goal": GOAL,
            "filter": {"tag": "code-review"},
            "inputs": ["source_code"],
        });
        let (status, plan) = post(&server, "/v1/plans", &request).await;
        assert_eq!(status, 201, "{plan}");
        assert_eq!(plan["version"], 1);
        assert_eq!(plan["status"], "proposed");
        let id = plan["plan_id"].as_str().expect("an id").to_owned();

        // Review: the run waits.
        let (status, waiting) = post(
            &server,
            &format!("/v1/plans/{id}:execute"),
            &json!({"input": {"source_code": CODE}, "review": true}),
        )
        .await;
        assert_eq!(status, 202, "{waiting}");
        assert_eq!(waiting["status"], "awaiting_review");
        let (_, runs) = get(&server, "/v1/runs").await;
        assert_eq!(runs["runs"].as_array().map(Vec::len), Some(0), "{runs}");
        let (status, refused) = post(&server, &format!("/v1/plans/{id}:execute"), &json!({})).await;
        assert_eq!(status, 409, "{refused}");

        // An edit naming an agent the caller may not use is refused, with
        // the step named; the plan still waits.
        let mut bad = plan["document"].clone();
        bad["steps"][0]["agent"] = json!("no_such_agent");
        let (status, problem) = post(
            &server,
            &format!("/v1/plans/{id}:approve"),
            &json!({"plan": bad}),
        )
        .await;
        assert_eq!(status, 400, "{problem}");
        assert!(problem.to_string().contains("no_such_agent"), "{problem}");

        // The edited plan (security review only, then the report) runs.
        let mut edited = plan["document"].clone();
        let steps = edited["steps"].as_array().cloned().unwrap_or_default();
        let kept: Vec<Value> = steps
            .into_iter()
            .filter(|step| step["agent"] != "style_checker")
            .map(|mut step| {
                if step["agent"] == "report_generator" {
                    step["inputs"] = json!(["security_expert.output"]);
                }
                step
            })
            .collect();
        edited["steps"] = Value::Array(kept);
        let (status, outcome) = post(
            &server,
            &format!("/v1/plans/{id}:approve"),
            &json!({"plan": edited}),
        )
        .await;
        assert_eq!(status, 200, "{outcome}");
        assert_eq!(outcome["status"], "succeeded", "{outcome}");
        let nodes: Vec<String> = outcome["trace"]["nodes"]
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .filter_map(|node| node["agent"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            !nodes.iter().any(|agent| agent == "style_checker"),
            "{outcome}"
        );
        let (status, latest) = get(&server, &format!("/v1/plans/{id}")).await;
        assert_eq!(status, 200, "{latest}");
        assert_eq!(latest["status"], "executed");
        assert_eq!(latest["run_id"], outcome["run_id"]);
        assert_eq!(agents_of(&latest), ["security_expert", "report_generator"]);
        let (_, first) = get(&server, &format!("/v1/plans/{id}?version=1")).await;
        assert_eq!(agents_of(&first).len(), 3, "{first}");

        // A second plan, rejected in review, never runs.
        let (_, plan) = post(&server, "/v1/plans", &request).await;
        let id = plan["plan_id"].as_str().expect("an id").to_owned();
        let (status, _) = post(
            &server,
            &format!("/v1/plans/{id}:execute"),
            &json!({"input": {"source_code": CODE}, "review": true}),
        )
        .await;
        assert_eq!(status, 202);
        let (status, rejected) = post(&server, &format!("/v1/plans/{id}:reject"), &json!({})).await;
        assert_eq!(status, 200, "{rejected}");
        assert_eq!(rejected["status"], "rejected");
        let (status, _) = post(&server, &format!("/v1/plans/{id}:approve"), &json!({})).await;
        assert_eq!(status, 409);
        let (_, runs) = get(&server, "/v1/runs").await;
        assert_eq!(runs["runs"].as_array().map(Vec::len), Some(1), "{runs}");
    });
}

/// The shipped planner declaration, pointed at the fake provider.
fn apply_planner(server: &Server, data_dir: &Path, fake: &FakeProvider) {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/agents/planner.yaml"),
    )
    .expect("the shipped planner declaration");
    let declaration = shipped
        .replace("https://api.openai.com/v1", fake.base_url())
        .replace("gpt-4o-mini", "fake-model");
    let file = data_dir.join("planner.yaml");
    std::fs::write(&file, declaration).expect("writes the declaration");
    let (ok, stdout, stderr) = support::cli(
        Some((server, data_dir)),
        &["agents", "apply", file.to_str().expect("utf-8 path")],
    );
    assert!(ok, "{stdout}\n{stderr}");
}

fn answer(plan: &Value) -> FakeReply {
    FakeReply::text(
        &format!("Here is the plan:\n```json\n{plan}\n```"),
        1,
        Usage {
            input_tokens: 100,
            output_tokens: 50,
        },
    )
}

fn security_plan(agent: &str) -> Value {
    json!({
        "goal": "find security problems and report them",
        "steps": [
            {"id": "security", "agent": agent, "task": "review for security", "inputs": ["source_code"]},
            {"id": "report", "agent": "report_generator", "task": "write the report", "inputs": ["security.output"]}
        ],
        "rationale": ["a security review, then a report"],
        "candidates": [{"agent": agent, "selected": true, "reason": "security"}]
    })
}

#[test]
fn a_model_agent_planner_is_corrected_refused_and_its_valid_plan_runs() {
    let runtime = runtime();
    let fake = runtime
        .block_on(FakeOpenAi::start())
        .expect("the fake starts");
    let data_dir = tempfile::tempdir().expect("temp dir");
    let log = data_dir.path().join("server.log");
    let server = start_logged(data_dir.path(), &[], &[], &log);
    set_secret(
        &server,
        data_dir.path(),
        "openai",
        "sk-plan-test-0000000000",
    );
    apply_planner(&server, data_dir.path(), &fake);
    runtime.block_on(async {
        let request = json!({
            "goal": "find security problems and report them",
            "filter": {"tag": "code-review"},
            "planner": "goal_planner",
        });
        // An invalid answer (no steps), then a valid one: corrected.
        fake.push([
            answer(&json!({"goal": "find security problems"})),
            answer(&security_plan("security_expert")),
        ]);
        let (status, plan) = post(&server, "/v1/plans", &request).await;
        assert_eq!(status, 201, "{plan}");
        assert_eq!(agents_of(&plan), ["security_expert", "report_generator"]);
        assert_eq!(plan["planner"], "goal_planner");
        let requests = fake.requests();
        assert_eq!(requests.len(), 2);
        let feedback = requests[1].body.to_string();
        assert!(
            feedback.contains("errors") && feedback.contains("steps"),
            "{feedback}"
        );
        // The candidates sent are cards: names, skills, modes.
        assert!(requests[0].body.to_string().contains("security_expert"));

        // The valid plan runs.
        let id = plan["plan_id"].as_str().expect("an id").to_owned();
        let (status, outcome) = post(
            &server,
            &format!("/v1/plans/{id}:execute"),
            &json!({"input": {"source_code": CODE}}),
        )
        .await;
        assert_eq!(status, 200, "{outcome}");
        assert_eq!(outcome["status"], "succeeded", "{outcome}");

        // Stays invalid: three answers, then the request fails with the
        // errors.
        fake.push([
            answer(&json!({"goal": "g", "steps": []})),
            answer(&json!({"goal": "g", "steps": []})),
            answer(&json!({"goal": "g", "steps": []})),
        ]);
        let (status, problem) = post(&server, "/v1/plans", &request).await;
        assert_eq!(status, 502, "{problem}");
        assert!(
            problem["violations"]
                .as_array()
                .is_some_and(|v| !v.is_empty()),
            "{problem}"
        );
        assert_eq!(fake.requests().len(), 5);

        // A plan naming an agent the caller may not call (unregistered, or
        // not discoverable by it): refused, the step named, nothing runs.
        let (_, before) = get(&server, "/v1/runs").await;
        fake.push([
            answer(&security_plan("payroll_admin")),
            answer(&security_plan("payroll_admin")),
            answer(&security_plan("payroll_admin")),
        ]);
        let (status, problem) = post(&server, "/v1/plans", &request).await;
        assert_eq!(status, 502, "{problem}");
        let text = problem.to_string();
        assert!(
            text.contains("step `security`") && text.contains("payroll_admin"),
            "{text}"
        );
        let (_, after) = get(&server, "/v1/runs").await;
        assert_eq!(before["runs"], after["runs"]);
    });
}

/// The plan id `convergio plan` printed on stderr (`plan ID (version N)`).
fn plan_id_of(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|line| line.strip_prefix("plan "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no plan id in {stderr:?}"))
        .to_owned()
}

#[test]
fn stored_plans_are_listed_shown_reviewed_approved_and_rejected_from_the_cli() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    let at = Some((&server, data_dir.path()));
    let code = data_dir.path().join("code.py");
    std::fs::write(&code, CODE).expect("writes the code");
    let input = format!("source_code=@{}", code.display());
    let make = || {
        let (ok, _, stderr) = support::cli(
            at,
            &[
                "plan",
                GOAL,
                "--tag",
                "code-review",
                "--first-input",
                "source_code",
            ],
        );
        assert!(ok, "{stderr}");
        plan_id_of(&stderr)
    };

    let first = make();
    let (ok, out, err) = support::cli(at, &["plans", "show", &first]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!("plan {first} version 1: proposed")),
        "{out}"
    );
    let (ok, _, err) = support::cli(
        at,
        &["plans", "execute", &first, "--review", "--input", &input],
    );
    assert!(ok, "{err}");
    assert!(err.contains("awaits review"), "{err}");
    let (ok, out, err) = support::cli(at, &["plans", "reject", &first]);
    assert!(ok, "{err}");
    assert!(out.contains(": rejected"), "{out}");
    let (ok, _, err) = support::cli(at, &["plans", "approve", &first]);
    assert!(!ok, "a rejected plan is not approved");
    assert!(err.contains("409"), "{err}");

    let second = make();
    let (ok, _, err) = support::cli(
        at,
        &["plans", "execute", &second, "--review", "--input", &input],
    );
    assert!(ok, "{err}");
    let (ok, out, err) = support::cli(at, &["plans", "approve", &second]);
    assert!(ok, "{err}");
    assert!(out.contains("# Code review report"), "{out}");

    // Listed newest first; by status; one per page with the next page's command.
    let (ok, out, err) = support::cli(at, &["plans", "list"]);
    assert!(ok, "{err}");
    let listed: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(listed, [second.as_str(), first.as_str()], "{out}");
    let (ok, out, err) = support::cli(at, &["plans", "list", "--status", "rejected"]);
    assert!(ok, "{err}");
    assert!(out.contains(&first) && !out.contains(&second), "{out}");
    let (ok, out, err) = support::cli(at, &["plans", "list", "--page-size", "1"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&second)
            && out.contains(&format!("more: convergio plans list --page-token {second}")),
        "{out}"
    );

    let (ok, _, err) = support::cli(at, &["plans", "show", "no-such-plan"]);
    assert!(!ok);
    assert!(err.contains("404"), "{err}");
}
