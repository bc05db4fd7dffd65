//! Re-planning (issue 19, §9.2) end to end, with the real binary: a plan
//! made by the shipped model-agent planner (against the project's fake
//! OpenAI-compatible provider on loopback) runs over four test agents in
//! this process, registered through the API, each counting its calls; one
//! of them always fails.
//!
//! - `:execute` with `replan: {max_replans: 1}` in stream mode: the failing
//!   step asks the planner again, which is sent the failure point (the
//!   error, the finished step with its output); an answer changing the
//!   finished step is sent back with the violation; the corrected plan
//!   runs to success, the finished step ran once, the event stream and the
//!   trace carry `plan_revised` with the diff, the planner's tokens count
//!   in the run's usage, and the new plan is the plan's next version.
//! - spent re-plans: the new plan fails too and the run ends
//!   `replans_exhausted` with the finished step's output readable.
//!
//! - the built-in planner: the failed step moves to the agent closest to
//!   the failed one (`backup_analyser`), the plan approved in review being
//!   the one that ran;
//! - SIGKILL of `convergio serve` while the planner is being asked (the
//!   failure is journaled), then a restart and `:resume`: the planner is
//!   asked again from the same failure point, and the run ends as an
//!   uninterrupted one, no agent called twice.
//!
//! Crashes before and after a re-plan are also tested in-process on both
//! backends (`store/tests/runs/replan.rs`).

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use convergio_agents::logic::text_parts;
use convergio_agents::{
    spawn_logic, AgentLogic, AgentsError, RunningAgent, ServeOptions, TaskContext,
};
use convergio_models::fake::{FakeOpenAi, FakeProvider, FakeReply};
use convergio_models::Usage;
use serde_json::{json, Value};
use support::{admin_token, set_secret, start_logged, Server};

const GOAL: &str = "fetch the data, analyse it and report";

/// A test agent: answers `agent/node(inputs)`, or fails every call.
struct Counting {
    name: &'static str,
    fails: bool,
    calls: Mutex<Vec<String>>,
}

impl Counting {
    fn new(name: &'static str, fails: bool) -> Arc<Self> {
        Arc::new(Self {
            name,
            fails,
            calls: Mutex::new(Vec::new()),
        })
    }

    fn count(&self) -> usize {
        self.calls.lock().expect("calls").len()
    }

    fn card(&self, skill: &str) -> Value {
        json!({
            "name": self.name,
            "description": format!("{} (re-planning test)", self.name),
            "version": "1.0.0",
            "provider": {"organization": "Convergio tests", "url": "https://convergio.dev/tests"},
            "capabilities": {"streaming": false},
            "defaultInputModes": ["text/plain"],
            "defaultOutputModes": ["text/plain"],
            "skills": [{"id": skill, "name": skill, "description": "test", "tags": ["replan-test", skill]}]
        })
    }
}

#[async_trait]
impl AgentLogic for Counting {
    async fn reply(&self, message: &Value) -> Option<Value> {
        let node = message["metadata"]["convergio.node_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.calls.lock().expect("calls").push(node.clone());
        if self.fails {
            // No direct reply: `execute` fails the task.
            return None;
        }
        let text = format!("{}/{node}({})", self.name, text_parts(message).join(","));
        Some(json!({"parts": [{"text": text}]}))
    }

    async fn execute(&self, _message: Value, _context: TaskContext) -> Result<(), AgentsError> {
        Err(AgentsError::Logic {
            reason: format!("{} is out of order", self.name),
        })
    }
}

struct Agents {
    fetcher: Arc<Counting>,
    analyser: Arc<Counting>,
    backup: Arc<Counting>,
    reporter: Arc<Counting>,
    _running: Vec<RunningAgent>,
}

async fn start_agents(server: &Server, data_dir: &Path) -> Agents {
    let fetcher = Counting::new("fetcher", false);
    let analyser = Counting::new("analyser", true);
    let backup = Counting::new("backup_analyser", false);
    let reporter = Counting::new("reporter", false);
    let mut running = Vec::new();
    for (agent, skill) in [
        (&fetcher, "fetch"),
        (&analyser, "analyse"),
        (&backup, "analyse"),
        (&reporter, "report"),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let served = spawn_logic(
            agent.clone(),
            agent.card(skill),
            listener,
            ServeOptions::default(),
        )
        .await
        .expect("agent starts");
        let response = reqwest::Client::new()
            .post(format!("{}/v1/agents", server.base))
            .bearer_auth(admin_token(data_dir))
            .json(&served.card())
            .send()
            .await
            .expect("registers");
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        running.push(served);
    }
    Agents {
        fetcher,
        analyser,
        backup,
        reporter,
        _running: running,
    }
}

/// A request as the administrator: status, headers' Location, body text.
async fn send(
    server: &Server,
    data_dir: &Path,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Option<String>, String) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", server.base))
        .bearer_auth(admin_token(data_dir));
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    (status, location, response.text().await.unwrap_or_default())
}

async fn post(server: &Server, data_dir: &Path, path: &str, body: &Value) -> (u16, Value) {
    let (status, _, text) = send(server, data_dir, reqwest::Method::POST, path, Some(body)).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn get(server: &Server, data_dir: &Path, path: &str) -> (u16, Value) {
    let (status, _, text) = send(server, data_dir, reqwest::Method::GET, path, None).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
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

/// The planner's answer: `plan` as a fenced JSON block, 150 tokens.
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

fn step(id: &str, agent: &str, inputs: &[&str]) -> Value {
    json!({"id": id, "agent": agent, "task": format!("{id} the data"), "inputs": inputs})
}

/// fetch → analyse (on `analyse_agent`) → report.
fn first_plan(analyse_agent: &str) -> Value {
    json!({
        "goal": GOAL,
        "steps": [
            step("fetch", "fetcher", &["topic"]),
            step("analyse", analyse_agent, &["fetch.output"]),
            step("report", "reporter", &["analyse.output"]),
        ],
        "rationale": ["fetch, analyse, report"],
        "candidates": [
            {"agent": "fetcher", "selected": true, "reason": "fetches"},
            {"agent": "analyser", "selected": true, "reason": "analyses"},
            {"agent": "backup_analyser", "selected": false, "reason": "a second analyser"},
            {"agent": "reporter", "selected": true, "reason": "reports"}
        ]
    })
}

/// The finished `fetch`, then `analyse2` on `analyse_agent` and `report`
/// after it.
fn second_plan(fetch_agent: &str, analyse_agent: &str) -> Value {
    json!({
        "goal": GOAL,
        "steps": [
            step("fetch", fetch_agent, &["topic"]),
            step("analyse2", analyse_agent, &["fetch.output"]),
            step("report", "reporter", &["analyse2.output"]),
        ],
        "rationale": ["the analyser failed; the backup takes over"]
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Makes a plan with the model-agent planner answering `plan`: its id.
async fn make_plan(server: &Server, data_dir: &Path, fake: &FakeProvider, plan: &Value) -> String {
    fake.push([answer(plan)]);
    let request = json!({
        "goal": GOAL,
        "agents": ["fetcher", "analyser", "backup_analyser", "reporter"],
        "planner": "goal_planner",
    });
    let (status, made) = post(server, data_dir, "/v1/plans", &request).await;
    assert_eq!(status, 201, "{made}");
    made["plan_id"].as_str().expect("a plan id").to_owned()
}

#[test]
fn a_failed_step_is_replanned_from_the_failure_point_and_spent_replans_end_the_run() {
    let runtime = runtime();
    let fake = runtime
        .block_on(FakeOpenAi::start())
        .expect("the fake starts");
    let data_dir = tempfile::tempdir().expect("temp dir");
    let data = data_dir.path();
    let log = data.join("server.log");
    let server = start_logged(data, &[], &[], &log);
    set_secret(&server, data, "openai", "sk-replan-test-000000000");
    apply_planner(&server, data, &fake);
    runtime.block_on(async {
        let agents = start_agents(&server, data).await;
        let plan_id = make_plan(&server, data, &fake, &first_plan("analyser")).await;

        // The re-plan: first an answer that changes the finished step
        // (sent back with the violation), then a valid one.
        fake.push([
            answer(&second_plan("backup_analyser", "backup_analyser")),
            answer(&second_plan("fetcher", "backup_analyser")),
        ]);
        let before = fake.requests().len();
        let execute = json!({
            "mode": "stream",
            "input": {"topic": "rust"},
            "replan": {"max_replans": 1},
        });
        let (status, location, stream) = send(
            &server,
            data,
            reqwest::Method::POST,
            &format!("/v1/plans/{plan_id}:execute"),
            Some(&execute),
        )
        .await;
        assert_eq!(status, 200, "{stream}");
        // `plan_revised` in the event stream, with the diff of the steps.
        assert!(stream.contains("event: plan_revised"), "{stream}");
        let revised: Value = stream
            .lines()
            .skip_while(|line| *line != "event: plan_revised")
            .find_map(|line| line.strip_prefix("data: "))
            .and_then(|data| serde_json::from_str(data).ok())
            .expect("the plan_revised event's data");
        assert_eq!(revised["failed_node"], "analyse", "{revised}");
        assert_eq!(revised["diff"]["added"], json!(["analyse2"]), "{revised}");
        assert_eq!(revised["diff"]["removed"], json!(["analyse"]), "{revised}");
        assert_eq!(revised["diff"]["changed"], json!(["report"]), "{revised}");
        assert_eq!(revised["diff"]["kept"], json!(["fetch"]), "{revised}");
        assert!(stream.contains("event: run_finished"), "{stream}");

        // What the planner was sent: the failure point, then the feedback.
        let requests = fake.requests();
        assert_eq!(requests.len(), before + 2);
        let asked = requests[before].body.to_string();
        assert!(asked.contains("replan"), "{asked}");
        assert!(
            asked.contains("fetcher/fetch("),
            "the finished output: {asked}"
        );
        assert!(asked.contains("out of order"), "the error: {asked}");
        let feedback = requests[before + 1].body.to_string();
        assert!(feedback.contains("step `fetch` already ran"), "{feedback}");

        // The run succeeded on the new plan; the finished step ran once.
        let run = location
            .expect("the run's location")
            .replace("/v1/runs/", "");
        let (status, result) = get(&server, data, &format!("/v1/runs/{run}/result")).await;
        assert_eq!(status, 200, "{result}");
        assert_eq!(result["status"], "succeeded", "{result}");
        assert!(
            result["output"].as_str().is_some_and(
                |output| output.starts_with("reporter/report(backup_analyser/analyse2(")
            ),
            "{result}"
        );
        assert_eq!(agents.fetcher.count(), 1, "fetch ran once");
        assert_eq!(agents.backup.count(), 1);
        assert_eq!(agents.reporter.count(), 1);
        let failed_calls = agents.analyser.count();
        assert!(failed_calls >= 1);
        // In the trace, with the planner's usage in the run's totals.
        let (_, trace) = get(&server, data, &format!("/v1/runs/{run}/trace")).await;
        let revisions = trace["revisions"].as_array().cloned().unwrap_or_default();
        assert_eq!(revisions.len(), 1, "{trace}");
        assert_eq!(
            revisions[0]["diff"]["added"],
            json!(["analyse2"]),
            "{trace}"
        );
        assert_eq!(revisions[0]["planner"], "goal_planner", "{trace}");
        let planner_tokens = revisions[0]["usage"]["tokens_in"].as_u64().unwrap_or(0)
            + revisions[0]["usage"]["tokens_out"].as_u64().unwrap_or(0);
        assert!(planner_tokens > 0, "{trace}");
        assert!(
            trace["total_tokens"].as_u64().unwrap_or(0) >= planner_tokens,
            "{trace}"
        );
        // The new plan is the plan's latest version, checked and owned.
        let (_, latest) = get(&server, data, &format!("/v1/plans/{plan_id}")).await;
        assert_eq!(latest["planner"], "goal_planner (re-plan 1)", "{latest}");
        let agents_now: Vec<&str> = latest["document"]["steps"]
            .as_array()
            .map(|steps| steps.iter().filter_map(|s| s["agent"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(agents_now, ["fetcher", "backup_analyser", "reporter"]);

        // Spent re-plans: the new plan fails too, and with max_replans 1
        // the run ends `replans_exhausted` with its partial results.
        let plan_id = make_plan(&server, data, &fake, &first_plan("analyser")).await;
        fake.push([answer(&second_plan("fetcher", "analyser"))]);
        let (status, outcome) = post(
            &server,
            data,
            &format!("/v1/plans/{plan_id}:execute"),
            &json!({"input": {"topic": "go"}, "replan": {"max_replans": 1}}),
        )
        .await;
        assert_eq!(status, 200, "{outcome}");
        assert_eq!(outcome["status"], "replans_exhausted", "{outcome}");
        assert!(
            outcome["error"]
                .as_str()
                .is_some_and(|error| error.contains("analyse2") && error.contains("max_replans 1")),
            "{outcome}"
        );
        assert!(
            outcome["output"]["fetch"]
                .as_str()
                .is_some_and(|output| output.starts_with("fetcher/fetch(")),
            "{outcome}"
        );
        assert_eq!(outcome["output"].as_object().map(|o| o.len()), Some(1));
        assert_eq!(agents.fetcher.count(), 2, "once per run");
        assert!(agents.analyser.count() > failed_calls);

        // A request for more re-plans than the server allows is refused.
        let (status, problem) = post(
            &server,
            data,
            &format!("/v1/plans/{plan_id}:execute"),
            &json!({"input": {"topic": "go"}, "replan": {"max_replans": 0}}),
        )
        .await;
        assert_eq!(status, 400, "{problem}");
    });
}

#[test]
fn the_builtin_planner_moves_a_failed_step_to_the_closest_agent() {
    let runtime = runtime();
    let data_dir = tempfile::tempdir().expect("temp dir");
    let data = data_dir.path();
    let log = data.join("server.log");
    let server = start_logged(data, &[], &[], &log);
    runtime.block_on(async {
        let agents = start_agents(&server, data).await;
        let request = json!({
            "goal": GOAL,
            "agents": ["fetcher", "analyser", "backup_analyser", "reporter"],
        });
        let (status, made) = post(&server, data, "/v1/plans", &request).await;
        assert_eq!(status, 201, "{made}");
        let plan_id = made["plan_id"].as_str().expect("a plan id").to_owned();
        // The plan that runs is fixed by review: fetch → analyse on the
        // failing analyser → report.
        let (status, waiting) = post(
            &server,
            data,
            &format!("/v1/plans/{plan_id}:execute"),
            &json!({"input": {"topic": "rust"}, "review": true, "replan": {"max_replans": 2}}),
        )
        .await;
        assert_eq!(status, 202, "{waiting}");
        let (status, outcome) = post(
            &server,
            data,
            &format!("/v1/plans/{plan_id}:approve"),
            &json!({"plan": first_plan("analyser")}),
        )
        .await;
        assert_eq!(status, 200, "{outcome}");
        assert_eq!(outcome["status"], "succeeded", "{outcome}");
        let revisions = outcome["trace"]["revisions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(revisions.len(), 1, "{outcome}");
        assert_eq!(revisions[0]["planner"], "builtin", "{outcome}");
        assert_eq!(revisions[0]["diff"]["changed"], json!(["analyse"]));
        assert_eq!(revisions[0]["diff"]["kept"], json!(["fetch"]));
        assert_eq!(agents.fetcher.count(), 1, "fetch ran once");
        assert_eq!(agents.backup.count(), 1);
        assert_eq!(agents.reporter.count(), 1);
        let (_, latest) = get(&server, data, &format!("/v1/plans/{plan_id}")).await;
        assert_eq!(latest["planner"], "builtin (re-plan 1)", "{latest}");
        assert_eq!(latest["document"]["steps"][1]["agent"], "backup_analyser");
        assert!(
            latest["document"]["rationale"]
                .as_array()
                .and_then(|lines| lines.last())
                .and_then(Value::as_str)
                .is_some_and(|why| why.contains("backup_analyser takes it over")
                    || why.contains("`backup_analyser` takes it over")),
            "{latest}"
        );
    });
}

/// The same replica name across restarts, so a resume takes the run's
/// lease at once.
const REPLICA: [(&str, &str); 1] = [("CONVERGIO_REPLICA_ID", "replan-test")];

#[test]
fn sigkill_between_a_failure_and_its_replan_then_resume_gives_the_same_outcome() {
    let runtime = runtime();
    let fake = runtime
        .block_on(FakeOpenAi::start())
        .expect("the fake starts");
    let data_dir = tempfile::tempdir().expect("temp dir");
    let data = data_dir.path();
    let server = start_logged(data, &[], &REPLICA, &data.join("server.log"));
    set_secret(&server, data, "openai", "sk-replan-test-000000000");
    apply_planner(&server, data, &fake);
    let agents = runtime.block_on(start_agents(&server, data));
    let (run_id, asked) = runtime.block_on(async {
        let plan_id = make_plan(&server, data, &fake, &first_plan("analyser")).await;
        // The planner never answers the re-plan in this process.
        fake.push([FakeReply::Hang { chunks: Vec::new() }]);
        let before = fake.requests().len();
        let (status, accepted) = post(
            &server,
            data,
            &format!("/v1/plans/{plan_id}:execute"),
            &json!({"mode": "async", "input": {"topic": "rust"}, "replan": {"max_replans": 1}}),
        )
        .await;
        assert_eq!(status, 202, "{accepted}");
        let run_id = accepted["run_id"].as_str().expect("a run id").to_owned();
        // The planner is asked only after the failure is journaled.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while fake.requests().len() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the planner was never asked"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        (run_id, fake.requests()[before].body.to_string())
    });
    assert!(
        asked.contains("replan") && asked.contains("out of order"),
        "{asked}"
    );
    server.kill();
    let failed_calls = agents.analyser.count();
    assert_eq!(agents.fetcher.count(), 1);
    assert_eq!(agents.backup.count(), 0);

    // Same data dir, same replica: the run is still running; resumed, it
    // asks the planner again from the same failure point and ends as an
    // uninterrupted run does.
    let server = start_logged(data, &[], &REPLICA, &data.join("server-2.log"));
    runtime.block_on(async {
        let (status, summary) = get(&server, data, &format!("/v1/runs/{run_id}")).await;
        assert_eq!(status, 200, "{summary}");
        assert_eq!(summary["status"], "running", "{summary}");
        fake.push([answer(&second_plan("fetcher", "backup_analyser"))]);
        let before = fake.requests().len();
        let (status, _, text) = send(
            &server,
            data,
            reqwest::Method::POST,
            &format!("/v1/runs/{run_id}:resume"),
            Some(&json!({})),
        )
        .await;
        assert!(status < 300, "{status} {text}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let result = loop {
            let (status, result) = get(&server, data, &format!("/v1/runs/{run_id}/result")).await;
            if status == 200 && result["status"] != "running" {
                break result;
            }
            assert!(std::time::Instant::now() < deadline, "{result}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!(result["status"], "succeeded", "{result}");
        assert!(
            result["output"].as_str().is_some_and(|output| output
                .starts_with("reporter/report(backup_analyser/analyse2(fetcher/fetch(")),
            "{result}"
        );
        let asked_again = fake.requests()[before].body.to_string();
        assert!(
            asked_again.contains("out of order") && asked_again.contains("fetcher/fetch("),
            "{asked_again}"
        );
        assert_eq!(
            result["trace"]["revisions"][0]["diff"]["kept"],
            json!(["fetch"])
        );
    });
    // Nothing that ran before the crash ran again: not the finished
    // `fetch`, not the failed `analyse`.
    assert_eq!(agents.fetcher.count(), 1);
    assert_eq!(agents.analyser.count(), failed_calls);
    assert_eq!(agents.backup.count(), 1);
    assert_eq!(agents.reporter.count(), 1);
}
