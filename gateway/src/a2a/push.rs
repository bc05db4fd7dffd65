//! Push notifications through the gateway (issue 24), so notifications
//! work when the agent cannot reach the caller, and the caller trusts one
//! sender: the gateway.
//!
//! - `CreateTaskPushNotificationConfig` (after the task-ownership check):
//!   the caller's URL must pass the SSRF guard (a private address needs
//!   the allow-list); the config is stored, owned by the caller
//!   (`PushStore`), and the agent is given the gateway's webhook instead —
//!   `{webhook_base}/push/{hook}` with a random token of its own. The
//!   caller gets its own config back. Get, List and Delete are answered
//!   from the store (Delete is passed on to the agent too).
//! - The webhook (`POST /push/{hook}`, public: the token is its
//!   credential, compared in constant time) takes a notification (an A2A
//!   `StreamResponse`, as the a2a-sdk's push sender posts it), stores it
//!   as a delivery and answers at once.
//! - Delivery, on a task of its own: POST to the caller's URL with the
//!   caller's token (`X-A2A-Notification-Token`) and authentication, and
//!   the gateway's signature (`X-Convergio-Signature`: a detached JWS,
//!   `protected..signature`, over the notification's canonical JSON, as
//!   agent cards are signed; verify it with the gateway's JWKS). Retried
//!   with exponential backoff up to `max_attempts`, then dead-lettered;
//!   each outcome is stored (the caller reads `GET
//!   /v1/tasks/{task_id}/push-deliveries`) and audited.
//! - Nothing is lost when a replica stops: a pending delivery records when
//!   its next attempt is due, and every replica sweeps for ones long
//!   overdue (due more than an attempt's timeout and a margin ago), claims
//!   each with a conditional update (one replica wins) and carries on.
//!
//! - A config given inline in `SendMessage`'s (or the streaming call's)
//!   `configuration.taskPushNotificationConfig` is kept the same way. A new
//!   task's id is not known yet, so the config is stored under a
//!   placeholder and bound to the task the first notification names, once
//!   the gateway knows that task as the caller's (it waits a moment for the
//!   route the answer creates); a notification naming another caller's
//!   task, or another task than its config's, is refused.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use axum::{Extension, Router};
use convergio_auth::card_signature::{sign_card, CardSigner};
use convergio_registry::push::{Delivery, DeliveryStatus, PushConfig, PushStore};
use convergio_schemas::a2a::Method;
use serde_json::{json, Value};

use super::forward::{self, Reply};
use super::resume::task_id_in;
use super::{A2aState, Incoming};
use crate::authorize::Gatekeeper;
use crate::layers::{ErrorShape, Failure};
use crate::routes::{RouteTable, RouteTarget};
use crate::ssrf::{check_url_resolved, parse_url, AllowList, GuardedResolver};
use crate::{GatewayError, Principal};

/// The header a push notification's token travels in (A2A, a2a-sdk).
pub const TOKEN_HEADER: &str = "x-a2a-notification-token";

/// The header carrying the gateway's signature of a delivered notification.
pub const SIGNATURE_HEADER: &str = "x-convergio-signature";

/// Largest notification the webhook accepts.
const MAX_NOTIFICATION_BYTES: usize = 1024 * 1024;

/// How long the webhook waits for the route of a task that an inline
/// config's first notification names (the agent may post before the
/// gateway has read its answer).
const ROUTE_WAIT: Duration = Duration::from_secs(5);

/// How push delivery behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct PushSettings {
    /// The gateway's base URL as the agents reach it (the webhook is
    /// `{webhook_base}/push/{hook}`).
    pub webhook_base: String,
    /// Attempts before a notification is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// The wait before the first retry; each later one doubles it.
    pub first_retry: Duration,
    /// Bound on one delivery attempt.
    pub attempt_timeout: Duration,
    /// How often this replica looks for deliveries another left overdue.
    pub sweep_interval: Duration,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            webhook_base: "http://127.0.0.1:8080".to_owned(),
            max_attempts: 6,
            first_retry: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(10),
            sweep_interval: Duration::from_secs(30),
        }
    }
}

/// The gateway's push notification service.
pub struct Push {
    store: Arc<dyn PushStore>,
    settings: PushSettings,
    allow: AllowList,
    http: reqwest::Client,
    signer: Option<Arc<dyn CardSigner>>,
}

impl std::fmt::Debug for Push {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Push")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

// === impl Push ===

impl Push {
    /// Push over `store`, delivering only where `allow` lets upstreams go,
    /// signing with `signer` when there is one.
    pub fn new(
        store: Arc<dyn PushStore>,
        settings: PushSettings,
        allow: AllowList,
        signer: Option<Arc<dyn CardSigner>>,
    ) -> Result<Self, GatewayError> {
        let http = reqwest::Client::builder()
            .timeout(settings.attempt_timeout)
            // A caller's endpoint gets exactly the URL it gave.
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver(allow.clone())))
            .build()
            .map_err(|error| GatewayError::internal("building the push client", error))?;
        Ok(Self {
            store,
            settings,
            allow,
            http,
            signer,
        })
    }

    /// The deliveries of `task_id`, for its owner.
    pub async fn deliveries(&self, task_id: &str) -> Result<Vec<Delivery>, GatewayError> {
        self.store.deliveries(task_id).await.map_err(storage)
    }
}

fn storage(error: convergio_registry::RegistryError) -> GatewayError {
    GatewayError::internal("the push store failed", error)
}

fn invalid(detail: impl Into<String>) -> GatewayError {
    GatewayError::InvalidParams {
        detail: detail.into(),
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A fresh random token (244 bits from the OS, as the model slots').
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The caller's view of a stored config.
fn view(config: &PushConfig) -> Value {
    let mut shown = config.config.clone();
    shown["id"] = Value::from(config.id.as_str());
    shown["taskId"] = Value::from(config.task_id.as_str());
    shown
}

/// Whether `call` is a message carrying an inline push config.
pub(super) fn has_inline_config(method: Method, params: &Value) -> bool {
    matches!(method, Method::SendMessage | Method::SendStreamingMessage)
        && params["configuration"]["taskPushNotificationConfig"]["url"].is_string()
}

/// Points a push config (`params`, an object) at the gateway's webhook of
/// `config` instead of the caller's endpoint.
fn point_at_gateway(params: &mut Value, push: &Push, config: &PushConfig) {
    if let Value::Object(params) = params {
        params.insert(
            "url".into(),
            Value::from(format!(
                "{}/push/{}",
                push.settings.webhook_base.trim_end_matches('/'),
                config.hook
            )),
        );
        params.insert("token".into(), Value::from(config.hook_token.as_str()));
        // The same id at the agent, so a deletion reaches the right one.
        params.insert("id".into(), Value::from(config.id.as_str()));
        params.remove("authentication");
    }
}

/// A message with an inline push config: the config is kept at the
/// gateway (bound to its task by the first notification when the task is
/// new), and the agent is given the webhook.
async fn handle_inline(
    state: &A2aState,
    push: &Push,
    target: &Arc<RouteTarget>,
    mut call: super::Call,
    request: &Incoming,
) -> Result<Reply, GatewayError> {
    if !forward::offers_push_notifications(&target.card) {
        return forward::forward(state, target, call, request).await;
    }
    let known_task = call.params()["message"]["taskId"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    let inline = &call.params()["configuration"]["taskPushNotificationConfig"];
    let id = inline["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    let owner = request.principal.owner_key();
    let config = push
        .prepare(known_task.as_deref(), id, &target.name, &owner, inline)
        .await?;
    point_at_gateway(
        &mut call.params_mut()["configuration"]["taskPushNotificationConfig"],
        push,
        &config,
    );
    let forwarded = forward::forward(state, target, call, request).await;
    if forwarded.is_err() {
        if let Err(cleanup) = push.store.delete_config(&config.task_id, &config.id).await {
            tracing::warn!(%cleanup, "an inline push config of a refused message stays stored");
        }
    }
    forwarded
}

/// A push-config call to `target` by `request`'s principal, with the
/// gateway in between.
pub(super) async fn handle(
    state: &A2aState,
    push: &Push,
    target: &Arc<RouteTarget>,
    mut call: super::Call,
    request: &Incoming,
) -> Result<Reply, GatewayError> {
    if has_inline_config(call.method, call.params()) {
        return handle_inline(state, push, target, call, request).await;
    }
    if !forward::offers_push_notifications(&target.card) {
        // The agent's own answer (-32003), given by the forwarder.
        return forward::forward(state, target, call, request).await;
    }
    let task_id = super::inbound::task_id_of(call.method, call.params())
        .ok_or_else(|| invalid("taskId is required"))?
        .to_owned();
    let owner = request.principal.owner_key();
    let owned = state
        .routes
        .task_route(&task_id)
        .await?
        .is_some_and(|route| route.owner == owner && route.agent == target.name);
    if !owned {
        return Err(GatewayError::TaskNotFound { task_id });
    }
    let config_id = call
        .params()
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    match call.method {
        Method::CreateTaskPushNotificationConfig => {
            let config = push
                .prepare(
                    Some(&task_id),
                    config_id,
                    &target.name,
                    &owner,
                    call.params(),
                )
                .await?;
            point_at_gateway(call.params_mut(), push, &config);
            match forward::forward(state, target, call, request).await {
                Ok(_) => Ok(Reply::Unary(view(&config).into())),
                Err(error) => {
                    if let Err(cleanup) = push.store.delete_config(&task_id, &config.id).await {
                        tracing::warn!(%cleanup, task_id, "a push config the agent refused stays stored");
                    }
                    Err(error)
                }
            }
        }
        Method::GetTaskPushNotificationConfig => {
            let id = config_id.ok_or_else(|| invalid("id is required"))?;
            let config = push
                .store
                .config(&task_id, &id)
                .await
                .map_err(storage)?
                .ok_or_else(|| invalid(format!("task {task_id} has no push config {id}")))?;
            Ok(Reply::Unary(view(&config).into()))
        }
        Method::ListTaskPushNotificationConfigs => {
            let configs = push.store.configs(&task_id).await.map_err(storage)?;
            Ok(Reply::Unary(
                json!({
                    "configs": configs.iter().map(view).collect::<Vec<_>>(),
                    "nextPageToken": "",
                })
                .into(),
            ))
        }
        _ => {
            let id = config_id.ok_or_else(|| invalid("id is required"))?;
            if !push
                .store
                .delete_config(&task_id, &id)
                .await
                .map_err(storage)?
            {
                return Err(invalid(format!("task {task_id} has no push config {id}")));
            }
            // The agent stops posting; if it cannot be told, its posts to
            // the deleted webhook are refused anyway.
            if let Err(error) = forward::forward(state, target, call, request).await {
                tracing::info!(%error, task_id, "the agent did not take the push config's deletion");
            }
            Ok(Reply::Unary(json!({}).into()))
        }
    }
}

// === impl Push (configs) ===

impl Push {
    /// Checks and stores the caller's config of `params`, for `task_id`
    /// (`None`: a task not created yet; a placeholder until the first
    /// notification binds it).
    async fn prepare(
        &self,
        task_id: Option<&str>,
        id: Option<String>,
        agent: &str,
        owner: &str,
        params: &Value,
    ) -> Result<PushConfig, GatewayError> {
        let url = params
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("url is required"))?;
        let parsed = parse_url(url).map_err(|error| invalid(format!("url: {error}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("url must be http or https"));
        }
        check_url_resolved(&parsed, &self.allow)
            .await
            .map_err(|error| invalid(format!("url is refused: {error}")))?;
        let mut kept = serde_json::Map::new();
        for key in ["url", "token", "authentication"] {
            if let Some(value) = params.get(key) {
                kept.insert(key.to_owned(), value.clone());
            }
        }
        let hook = uuid::Uuid::new_v4().simple().to_string();
        let config = PushConfig {
            task_id: task_id.map_or_else(|| placeholder(&hook), str::to_owned),
            id: id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            agent: agent.to_owned(),
            owner: owner.to_owned(),
            config: Value::Object(kept),
            hook,
            hook_token: random_token(),
            created_at: now(),
        };
        if !self.store.insert_config(&config).await.map_err(storage)? {
            return Err(invalid(format!(
                "task {} has a push config {} already",
                config.task_id, config.id
            )));
        }
        Ok(config)
    }
}

// === the webhook, the deliveries API and delivery ===

/// What the webhook and the deliveries API need.
#[derive(Clone)]
pub struct PushHook {
    /// The service.
    pub push: Arc<Push>,
    /// Where deliveries are audited.
    pub gatekeeper: Arc<dyn Gatekeeper>,
    /// Whose task is whose.
    pub routes: Arc<dyn RouteTable>,
}

/// The webhook agents post to (public: its token is its credential) and
/// the callers' view of their deliveries.
pub fn push_router(hook: PushHook) -> Router {
    Router::new()
        .route("/push/{hook}", post(webhook))
        .route(
            "/v1/tasks/{task_id}/push-deliveries",
            get(deliveries_handler),
        )
        .with_state(hook)
}

/// The OpenAPI description of the deliveries API.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(deliveries_handler),
    tags((name = "push", description = "Push notifications relayed by the gateway"))
)]
pub(crate) struct PushApiDoc;

/// `GET /v1/tasks/{task_id}/push-deliveries`: the notifications relayed
/// for one of the caller's tasks, with where each stands.
#[utoipa::path(
    get,
    path = "/v1/tasks/{task_id}/push-deliveries",
    operation_id = "listPushDeliveries",
    tag = "push",
    params(("task_id" = String, Path, description = "The task's id")),
    responses(
        (status = 200, description = "`{deliveries: [{id, configId, status, attempts, lastError, createdAt, updatedAt, notification}]}`, oldest first.", body = Object),
        (status = 404, description = "No such task of the caller"),
    )
)]
async fn deliveries_handler(
    State(hook): State<PushHook>,
    Extension(principal): Extension<Principal>,
    Path(task_id): Path<String>,
) -> Result<Response, Failure> {
    let fail = |error| Failure::new(error, ErrorShape::Problem);
    let owned = hook
        .routes
        .task_route(&task_id)
        .await
        .map_err(fail)?
        .is_some_and(|route| route.owner == principal.owner_key());
    if !owned {
        return Err(fail(GatewayError::TaskNotFound { task_id }));
    }
    let deliveries = hook.push.deliveries(&task_id).await.map_err(fail)?;
    let shown: Vec<Value> = deliveries
        .iter()
        .map(|delivery| {
            json!({
                "id": delivery.id,
                "configId": delivery.config_id,
                "status": delivery.status.as_str(),
                "attempts": delivery.attempts,
                "lastError": delivery.last_error,
                "createdAt": delivery.created_at,
                "updatedAt": delivery.updated_at,
                "notification": delivery.payload,
            })
        })
        .collect();
    Ok(Json(json!({ "deliveries": shown })).into_response())
}

/// `POST /push/{hook}`: an agent's notification for a caller. Refusals
/// are problem documents (the agent's sender logs them).
async fn webhook(
    State(hook): State<PushHook>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let fail = |error| Failure::new(error, ErrorShape::Problem);
    let config = hook
        .push
        .store
        .config_by_hook(&id)
        .await
        .map_err(|error| fail(storage(error)))?
        .ok_or_else(|| {
            fail(GatewayError::RouteNotFound {
                path: format!("/push/{id}"),
            })
        })?;
    let presented = headers
        .get(TOKEN_HEADER)
        .map(|value| value.as_bytes())
        .unwrap_or_default();
    if !constant_time_eq(presented, config.hook_token.as_bytes()) {
        return Err(fail(GatewayError::Unauthenticated {
            reason: "a push notification with a wrong token".to_owned(),
        }));
    }
    if body.len() > MAX_NOTIFICATION_BYTES {
        return Err(fail(GatewayError::PayloadTooLarge {
            limit: MAX_NOTIFICATION_BYTES,
        }));
    }
    let payload: Value = match serde_json::from_slice(&body) {
        Ok(payload @ Value::Object(_)) => payload,
        Ok(_) => {
            return Err(fail(GatewayError::MalformedJson {
                detail: "a notification is a JSON object".to_owned(),
            }))
        }
        Err(error) => {
            return Err(fail(GatewayError::MalformedJson {
                detail: error.to_string(),
            }))
        }
    };
    let config = bind(&hook, config, &payload).await.map_err(fail)?;
    let at = now();
    let delivery = Delivery {
        id: uuid::Uuid::new_v4().to_string(),
        task_id: config.task_id.clone(),
        config_id: config.id.clone(),
        owner: config.owner.clone(),
        payload,
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_at: at,
        last_error: None,
        created_at: at,
        updated_at: at,
    };
    hook.push
        .store
        .insert_delivery(&delivery)
        .await
        .map_err(|error| fail(storage(error)))?;
    tokio::spawn(deliver(hook, config, delivery));
    Ok(StatusCode::ACCEPTED.into_response())
}

/// The task id an inline config is stored under until its task is known
/// (no A2A task id starts with `?`: it is not a URL path character).
fn placeholder(hook: &str) -> String {
    format!("?{hook}")
}

/// The config of `hook` bound to the task `payload` names, when that task
/// is the config owner's at its agent (waiting [`ROUTE_WAIT`] at most for
/// the gateway to learn the task).
async fn bind(
    hook: &PushHook,
    mut config: PushConfig,
    payload: &Value,
) -> Result<PushConfig, GatewayError> {
    let refused = || GatewayError::Forbidden {
        agent: config.agent.clone(),
        action: "push (the notification names a task that is not its config's)".to_owned(),
    };
    let named = task_id_in(payload).ok_or_else(|| invalid("the notification names no task"))?;
    if config.task_id == named {
        return Ok(config);
    }
    if config.task_id != placeholder(&config.hook) {
        return Err(refused());
    }
    let deadline = tokio::time::Instant::now() + ROUTE_WAIT;
    let route = loop {
        match hook.routes.task_route(named).await? {
            Some(route) => break route,
            None if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            None => return Err(refused()),
        }
    };
    if route.owner != config.owner || route.agent != config.agent {
        return Err(refused());
    }
    let unbound = config.task_id.clone();
    // Bound now, or by a notification that arrived first: either way the
    // task is the one named.
    hook.push
        .store
        .bind_task(&config.hook, &unbound, named)
        .await
        .map_err(storage)?;
    config.task_id = named.to_owned();
    Ok(config)
}

/// Whether `a` and `b` are equal, in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Delivers `delivery` to `config`'s caller, retrying, and records the end.
async fn deliver(hook: PushHook, config: PushConfig, mut delivery: Delivery) {
    let push = &hook.push;
    let mut wait = push.settings.first_retry;
    let outcome = loop {
        delivery.attempts += 1;
        let attempt = push.attempt(&config, &delivery.payload).await;
        let last = delivery.attempts >= push.settings.max_attempts.max(1);
        let (status, error) = match &attempt {
            Ok(()) => (DeliveryStatus::Delivered, None),
            Err(error) if last => (DeliveryStatus::Dead, Some(error.as_str())),
            Err(error) => (DeliveryStatus::Pending, Some(error.as_str())),
        };
        let at = now();
        let next_at = at.saturating_add(i64::try_from(wait.as_secs()).unwrap_or(i64::MAX));
        if let Err(error) = push
            .store
            .update_delivery(&delivery.id, status, delivery.attempts, error, next_at, at)
            .await
        {
            tracing::warn!(%error, delivery = %delivery.id, "recording a push attempt failed");
        }
        if status != DeliveryStatus::Pending {
            break (status, attempt.err());
        }
        tokio::time::sleep(wait).await;
        wait = wait.saturating_mul(2);
    };
    let (status, error) = outcome;
    let host = parse_url(config.config["url"].as_str().unwrap_or_default())
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned));
    hook.gatekeeper
        .record_system(
            "push.deliver",
            &format!("task:{}", config.task_id),
            status.as_str(),
            json!({
                "owner": config.owner,
                "agent": config.agent,
                "config": config.id,
                "delivery": delivery.id,
                "attempts": delivery.attempts,
                "host": host,
                "error": error,
            }),
        )
        .await;
}

/// Every `sweep_interval`, takes over the deliveries other replicas left
/// overdue (see the module doc). Ends when the runtime does.
pub fn spawn_sweeper(hook: PushHook) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(hook.push.settings.sweep_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            sweep(&hook).await;
        }
    })
}

/// One sweep: claims and resumes the overdue pending deliveries.
async fn sweep(hook: &PushHook) {
    let push = &hook.push;
    let grace = push.settings.attempt_timeout + Duration::from_secs(1);
    let before = now().saturating_sub(i64::try_from(grace.as_secs()).unwrap_or(i64::MAX));
    let orphans = match push.store.orphaned(before, 100).await {
        Ok(orphans) => orphans,
        Err(error) => {
            tracing::warn!(%error, "looking for overdue push deliveries failed");
            return;
        }
    };
    for delivery in orphans {
        match push.store.claim(&delivery, now()).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(error) => {
                tracing::warn!(%error, delivery = %delivery.id, "claiming a push delivery failed");
                continue;
            }
        }
        match push
            .store
            .config(&delivery.task_id, &delivery.config_id)
            .await
        {
            Ok(Some(config)) => {
                tracing::info!(delivery = %delivery.id, attempts = delivery.attempts, "resuming an overdue push delivery");
                tokio::spawn(deliver(hook.clone(), config, delivery));
            }
            Ok(None) => {
                // Its config was deleted: nobody wants it any more.
                let at = now();
                let gone = push
                    .store
                    .update_delivery(
                        &delivery.id,
                        DeliveryStatus::Dead,
                        delivery.attempts,
                        Some("its push config was deleted"),
                        at,
                        at,
                    )
                    .await;
                if let Err(error) = gone {
                    tracing::warn!(%error, delivery = %delivery.id, "dead-lettering a push delivery failed");
                }
            }
            Err(error) => {
                tracing::warn!(%error, delivery = %delivery.id, "reading a push config failed");
            }
        }
    }
}

// === impl Push (delivery) ===

impl Push {
    /// One attempt to post `payload` to the caller of `config`.
    async fn attempt(&self, config: &PushConfig, payload: &Value) -> Result<(), String> {
        let url = config.config["url"]
            .as_str()
            .ok_or("the stored config has no url")?;
        let parsed = parse_url(url).map_err(|error| error.to_string())?;
        // Checked again: the allow-list may have shrunk since the config
        // was stored, and an address literal never reaches the resolver.
        crate::ssrf::check_url(&parsed, &self.allow).map_err(|error| error.to_string())?;
        let mut request = self.http.post(parsed).json(payload);
        if let Some(token) = config.config["token"].as_str() {
            request = request.header(TOKEN_HEADER, token);
        }
        let authentication = &config.config["authentication"];
        if let (Some(scheme), Some(credentials)) = (
            authentication["scheme"].as_str(),
            authentication["credentials"].as_str(),
        ) {
            request = request.header("authorization", format!("{scheme} {credentials}"));
        }
        if let Some(signer) = &self.signer {
            let signed = sign_card(payload, signer.as_ref()).map_err(|error| error.to_string())?;
            let signature = &signed["signatures"][0];
            request = request.header(
                SIGNATURE_HEADER,
                format!(
                    "{}..{}",
                    signature["protected"].as_str().unwrap_or_default(),
                    signature["signature"].as_str().unwrap_or_default()
                ),
            );
        }
        let response = request
            .send()
            .await
            .map_err(|error| crate::fetch::error_chain(&error))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the endpoint answered {}", response.status()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn the_caller_sees_its_own_config() {
        let config = PushConfig {
            task_id: "t1".into(),
            id: "c1".into(),
            agent: "echo".into(),
            owner: "alice".into(),
            config: json!({"url": "https://caller.example/hook", "token": "mine"}),
            hook: "h".into(),
            hook_token: "secret".into(),
            created_at: 0,
        };
        let shown = view(&config);
        assert_eq!(shown["url"], "https://caller.example/hook");
        assert_eq!(shown["token"], "mine");
        assert_eq!(
            (shown["id"].as_str(), shown["taskId"].as_str()),
            (Some("c1"), Some("t1"))
        );
        assert!(!shown.to_string().contains("secret"));
    }
}
