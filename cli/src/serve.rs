//! `convergio serve`: loads the configuration, opens the database (running
//! migrations), makes sure an admin token exists, loads the policy set (the
//! embedded example on first start) and watches it, starts and registers
//! the example agents, loads (or generates) the federation signing key and
//! stores the configured peers, and serves the gateway (reloading what can
//! change live on SIGHUP or a changed file, `reload.rs`) until Ctrl-C or SIGTERM;
//! then turns `/readyz` to 503, keeps accepting for `server.shutdown_delay_seconds`,
//! closes the listener, drains in-flight requests and the audit queue.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use convergio_agents::{ExampleAgent, RunningAgent, ServeOptions};
use convergio_auth::{JwtConfig, MtlsConfig, OrgSigningKey};
use convergio_gateway::a2a::{A2aConfig, AgentTimeouts, UpstreamCredentials};
use convergio_gateway::api_keys::StoredApiKeys;
use convergio_gateway::app::{
    build_router, AppConfig, CallBudgetHandle, GraphStoreHandle, JournalHandle, PolicyServices,
};
use convergio_gateway::federation::card_keys::FederationCardKeys;
use convergio_gateway::federation::{Federation, FederationConfig};
use convergio_gateway::layers::{
    ApiKeyVerifier, AuthenticateConfig, Authenticator, JwksSource, JwtAuthConfig, LimitsConfig,
};
use convergio_gateway::metrics::{GatewayMetrics, MetricSources};
use convergio_gateway::readiness::Readiness;
use convergio_gateway::runs_api::GraphsConfig;
use convergio_gateway::server::serve_with;
use convergio_gateway::ssrf::AllowList;
use convergio_gateway::tls::TlsAcceptor;
use convergio_orchestrator::{ExecutorConfig, Limits as GraphLimits};
use convergio_registry::{Registration, Registry, RegistryConfig};
use convergio_schemas::AgentRole;
use convergio_store::runs::{RunStore, RunStoreConfig};
use tokio::net::TcpListener;

use crate::config::{Config, ConfigFile, LogFormat, Overrides};
use crate::data_dir::{write_private, SIGNING_KEY_FILE_NAME};
use crate::env;
use crate::model_serving::{watch_agents_dir, ListenerPool, ModelFleet, ModelWiring};
use crate::security_config::SecuritySettings;

/// Flags of `convergio serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// YAML config file (see deploy/convergio.yaml).
    #[arg(long, env = env::CONFIG)]
    config: Option<PathBuf>,
    /// Data directory [default: ./.convergio].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<String>,
    /// Do not start the example agents.
    #[arg(long)]
    no_examples: bool,
}

/// Runs the server until it is told to stop.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => ConfigFile::read(path)?,
        None => ConfigFile::default(),
    };
    let environment: HashMap<String, String> = std::env::vars().collect();
    let overrides = Overrides {
        data_dir: args.data_dir,
        listen: args.listen,
        no_examples: args.no_examples,
    };
    let config = Config::resolve(file, &environment, &overrides)?;
    // A reload (issue 22) reads the same file with the same environment
    // and flags.
    let config_source = crate::reload::ConfigSource {
        path: args.config.clone(),
        environment,
        overrides,
    };
    let telemetry = crate::telemetry::Telemetry::init(
        &config.log_filter,
        config.log_format == LogFormat::Json,
        config.otlp.as_ref(),
    )
    .context("starting the span exporter")?;

    // Owner only (0700 directory, 0600 files), before the token, the key
    // or the database is written.
    crate::data_dir::prepare(&config.data_dir, &config.database_url)?;
    let (admin_token, token_source) = admin_token(&config)?;

    // One database handle (one pool) for the process: every store below is
    // built on a clone of it.
    let db = convergio_store::Db::open(
        &config.database_url,
        &convergio_store::DbConfig {
            max_connections: config.database_pool_size,
        },
    )
    .await
    .with_context(|| {
        format!(
            "opening the database {}",
            convergio_store::redact(&config.database_url)
        )
    })?;
    let store = convergio_store::registry::AgentStore::open(&db)
        .await
        .context("opening the agent registry")?;
    // The organisation key signs served cards and makes cards this
    // organisation signed `verified` on registration.
    let signing_key = if config.federation.enabled {
        Some(Arc::new(signing_key(&config)?))
    } else {
        None
    };
    // Peers' keys join at each sync of their catalogue.
    let card_keys = signing_key.as_ref().map(|key| {
        Arc::new(FederationCardKeys::new(
            key,
            [
                config.org_domain.as_str(),
                config.federation.domain.as_str(),
            ],
        ))
    });
    let org_keys: Arc<dyn convergio_registry::OrgKeys> = match &card_keys {
        Some(keys) => keys.clone(),
        None => Arc::new(convergio_registry::NoOrgKeys),
    };
    let (policy, audit_writer, watcher, quotas) = start_policy(&config, db.clone()).await?;
    // The example agents listen before the registry exists: their loopback
    // sockets join the upstream allow list, which the registry is built with.
    let examples = if config.examples {
        spawn_examples().await?
    } else {
        Vec::new()
    };
    let example_sockets = example_sockets(&examples)?;
    // Model agents (issue 17) get loopback listeners bound now for the same
    // reason: these sockets are in the allow list for the process's life (a
    // reload replaces only the configured entries).
    // Graph agents (issue 18) run on `graphs.max_agents` slots of the same
    // pool, so the gateway reaches both kinds the same way.
    // Plugin agents (issue 21) take `plugins.max_agents` more.
    let mut model_slots = ListenerPool::bind(
        config.models.max_agents + config.graphs.max_agents + config.plugins.max_agents,
    )
    .await?;
    let own_sockets: Vec<SocketAddr> = model_slots
        .sockets()?
        .into_iter()
        .chain(example_sockets.iter().map(|(_, socket)| *socket))
        .collect();
    // Split off once every socket of the pool is in the allow list.
    let graph_slots = model_slots.split_off(config.graphs.max_agents);
    let plugin_slots = model_slots.split_off(config.plugins.max_agents);
    let allow = upstream_allow(&config, &own_sockets);
    // Every collaborator is a constructor argument (issue #16): the upstream
    // check (the SSRF guard, so a registration naming a private address is
    // refused), the organisation keys, and the audit of registry changes
    // from the first one on (the example agents' registrations below are
    // changes like any other).
    let registry = Registry::builder(
        Arc::new(store),
        RegistryConfig {
            org_domain: config.org_domain.clone(),
            ..RegistryConfig::default()
        },
        Arc::new(allow.clone()),
    )
    .org_keys(org_keys.clone())
    .change_hook(Arc::new(convergio_gateway::authorize::AuditChanges::new(
        policy.audit.clone(),
    )))
    .build();
    let examples = register_examples(&registry, examples).await?;
    let lease_ttl = std::time::Duration::from_secs(config.graphs.lease_seconds);
    let mut journal_config = RunStoreConfig {
        lease_ttl,
        sqlite_full_sync: config.graphs.checkpoint_full_sync,
        ..RunStoreConfig::default()
    };
    if let Some(replica) = &config.graphs.replica_id {
        journal_config.replica.clone_from(replica);
    }
    let journal = RunStore::open(db.clone(), journal_config);
    let policy_version = policy.admin.engine().active_version();
    let readiness = Arc::new(Readiness::new(crate::probes::checks(
        &db,
        policy.admin.engine().clone(),
        example_sockets,
    )));
    let metrics = Arc::new(GatewayMetrics::new(
        config.graphs.max_metric_labels,
        MetricSources {
            pool: Some(Arc::new(crate::probes::DatabasePool(db.clone()))),
            audit: Some(policy.audit.clone()),
        },
    ));

    let api_keys = if config.security.api_keys {
        let store = Arc::new(convergio_store::registry::ApiKeys::new(&db));
        Some(Arc::new(StoredApiKeys::new(store)))
    } else {
        None
    };
    let models = ModelWiring::new(&config, &db)?;
    // The config's per-agent bounds; the model and graph fleets add each
    // of their agents' own while they serve it.
    let agent_timeouts = AgentTimeouts::from_map(config.upstream.agent_timeouts.clone());
    // Graph agents' runs go through the router, so their fleet is built
    // after it; the REST host hands it changes over this channel.
    let graph_directory = Arc::new(crate::graph_agents::GraphDirectory::default());
    let (graph_changes_to, graph_changes) = tokio::sync::mpsc::channel(64);
    let graph_agents = Arc::new(convergio_gateway::graph_agents_api::GraphAgents::new(
        journal.clone(),
        journal.clone(),
        Arc::new(crate::graph_agents::GraphNotifier::new(
            graph_changes_to,
            graph_directory.clone(),
        )),
    ));
    let memory =
        crate::memory_wiring::memory_api(&config, &db, models.secrets.clone(), allow.clone())
            .await?;
    let memory_follower = memory.memory.clone();
    let pruner = config.retention.enabled.then(|| {
        crate::retention::pruner(
            &config.retention,
            &db,
            policy.admin.audit().clone(),
            journal.clone(),
            memory.memory.clone(),
        )
    });
    // Stored plugins (issue 21): uploads are compiled by the runtime the
    // guardrails run on, and signatures verified with the keys that verify
    // cards.
    let (guardrails, plugin_runtime) =
        crate::guardrails::build(&config.guardrails, &config.plugins)?;
    let plugin_store: Arc<dyn convergio_registry::plugins::PluginStore> =
        Arc::new(convergio_store::plugins::SqlPluginStore::new(&db));
    let plugins = Arc::new(
        convergio_gateway::plugins_api::Plugins::new(
            plugin_store.clone(),
            plugin_runtime.clone(),
            org_keys,
            config.org_domain.clone(),
        )
        .require_signed(config.plugins.require_signed)
        .allow_grants(config.plugins.allowed_grants()),
    );
    let mut authenticator =
        build_authenticator(&config.security, &admin_token, api_keys.clone()).await?;
    let federation = if let (Some(key), Some(card_keys)) = (&signing_key, &card_keys) {
        let federation = start_federation(
            &config,
            &db,
            key.clone(),
            registry.clone(),
            card_keys.clone(),
        )
        .await?;
        authenticator = authenticator.with_peers(federation.clone());
        Some(federation)
    } else {
        None
    };
    let tls = match &config.security.tls {
        Some(tls) => Some(TlsAcceptor::from_config(tls).context("loading the tls listener")?),
        None => None,
    };

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;
    // One set of limits for documents and runs: the run ceilings are the
    // server's, never a graph's (issue 15).
    let graph_limits = GraphLimits {
        max_nodes: config.graphs.max_nodes,
        max_iterations: config.graphs.max_run_iterations,
        max_run_seconds: config.graphs.max_run_seconds,
        max_run_events: config.graphs.max_run_events,
        ..GraphLimits::default()
    };
    let fleet_registry = registry.clone();
    let plugin_registry = registry.clone();
    let fleet_allow = allow.clone();
    let push = push_service(&config, &db, local, tls.is_some(), &allow, &signing_key)?;
    let upstream_credentials = UpstreamCredentials::new(
        crate::security_config::load_upstream_credentials(&config.security)?,
    );
    let reloader = Arc::new(crate::reload::Reloader::new(
        config_source,
        config.clone(),
        crate::reload::LivePieces {
            tls: tls.clone(),
            configured_allow: config.upstream_allow.clone(),
            upstream_allow: allow.clone(),
            own_sockets,
            upstream_credentials: upstream_credentials.clone(),
            quotas,
            log_filter: telemetry.log_filter(),
        },
        metrics.clone(),
    ));
    let router = build_router(
        registry,
        AppConfig {
            authenticator: Some(Arc::new(authenticator)),
            api_keys,
            model_agents: Some(models.agents.clone()),
            graph_agents: Some(graph_agents),
            plugins: Some(plugins),
            secrets: Some(models.secrets.clone()),
            memory: Some(memory),
            call_budget: Some(CallBudgetHandle(models.budgets.clone())),
            admin_token: Some(admin_token),
            a2a: A2aConfig {
                upstream_timeout: config.upstream.timeout,
                max_upstream_timeout: config.upstream.max_timeout,
                agent_timeouts: agent_timeouts.clone(),
                model_slots: Some(model_slots.slots()),
                upstream_credentials: upstream_credentials.clone(),
                upstream_allow: allow,
                card_signer: signing_key.clone().map(|key| {
                    convergio_gateway::a2a::CardSignerHandle(
                        key as Arc<dyn convergio_auth::card_signature::CardSigner>,
                    )
                }),
                ..A2aConfig::default()
            },
            limits: LimitsConfig {
                max_body_bytes: config.max_body_bytes,
                request_timeout: std::time::Duration::from_secs(config.request_timeout_seconds),
                // Modules are a few MiB: uploads have their own bound.
                route_body_bytes: vec![(
                    convergio_gateway::plugins_api::PLUGINS_PREFIX.to_owned(),
                    config.plugins.max_module_bytes,
                )],
                ..LimitsConfig::default()
            },
            graphs: GraphsConfig {
                limits: graph_limits,
                max_batch_inputs: config.graphs.max_batch_inputs,
                retention_metrics: pruner.as_ref().map(|pruner| pruner.metrics()),
                model_metrics: Some(models.metrics.clone()),
                ..GraphsConfig::default()
            },
            executor: ExecutorConfig {
                checkpoint_by_default: config.graphs.checkpoint_all,
                resume_limits: graph_limits,
                limits: graph_limits,
                max_metric_labels: config.graphs.max_metric_labels,
                ..ExecutorConfig::default()
            },
            journal: Some(JournalHandle(journal.clone())),
            // Stored graphs live beside the runs that name them (issue 14).
            graph_store: Some(GraphStoreHandle(journal.clone())),
            // Plans (issue 19) live in the same database.
            plan_store: Some(convergio_gateway::app::PlanStoreHandle(Arc::new(
                convergio_store::plans::SqlPlanStore::new(&db),
            ))),
            lease_keeper: Some((lease_ttl / 3, config.graphs.take_over_expired_runs)),
            policy: Some(policy),
            federation: federation.clone(),
            readiness: readiness.clone(),
            metrics,
            guardrails: guardrails.clone(),
            // Streams are recorded beside the task routes, so a caller can
            // resume on any replica (issue 24).
            push,
            stream_log: config.upstream.resumable_streams.then(|| {
                convergio_gateway::app::StreamLogHandle(Arc::new(
                    convergio_store::registry::StreamEvents::new(&db),
                ))
            }),
        },
    );

    // Model agents' tool calls go through this same router, as each
    // agent's principal, so the fleet is built now that it exists; it
    // serves every stored declaration, then follows changes.
    let tool_app = Arc::new(router.clone());
    // No fleet takes over the example agents' names.
    let reserved: std::collections::HashSet<String> = ExampleAgent::ALL
        .iter()
        .filter(|_| !examples.is_empty())
        .map(|agent| agent.name().to_owned())
        .collect();
    // Graph agents' runs go through the same router, as each agent's
    // principal: their fleet is built now too, serves every stored
    // publication, then follows changes.
    let graph_fleet = crate::graph_agents::GraphFleet::new(crate::graph_agents::GraphFleetParts {
        pool: graph_slots,
        directory: graph_directory,
        store: journal.clone(),
        graphs: journal.clone(),
        registry: fleet_registry.clone(),
        timeouts: agent_timeouts.clone(),
        reserved: reserved.clone(),
        model_agents: models.store.clone(),
        app: Arc::downgrade(&tool_app),
        run_timeout: std::time::Duration::from_secs(config.graphs.max_run_seconds),
    })
    .spawn(graph_changes, config.models.watch_interval)
    .await;
    // Stored plugin agents are served (and followed) like graph agents.
    crate::plugin_agents::PluginFleet::new(crate::plugin_agents::PluginFleetParts {
        pool: plugin_slots,
        store: plugin_store.clone(),
        runtime: plugin_runtime.clone(),
        registry: plugin_registry,
        timeouts: agent_timeouts.clone(),
        reserved: reserved.clone(),
        // Plugin agents' `call_agent` goes through this same router, as
        // each plugin's principal.
        app: Arc::downgrade(&tool_app),
        agent_calls: config.plugins.agent_calls.clone(),
        require_signed: config.plugins.require_signed,
        allow_grants: config.plugins.allowed_grants(),
    })
    .spawn(std::time::Duration::from_secs(
        config.plugins.watch_interval_seconds,
    ))
    .await;
    let runtime = crate::model_runtime::ModelRuntime::new(
        models.keys.clone(),
        models.store.clone(),
        models.budgets.clone(),
        fleet_registry.clone(),
        Arc::new(crate::model_runtime::GatewayTools::new(
            Arc::downgrade(&tool_app),
            config.models.max_timeout,
        )),
        models.settings.clone(),
        fleet_allow,
    );
    let fleet = ModelFleet::new(
        models.store.clone(),
        fleet_registry,
        Arc::new(runtime),
        models.directory.clone(),
        model_slots,
        reserved,
        agent_timeouts,
    )
    .spawn(models.changes, config.models.watch_interval)
    .await;
    let agents_dir = match &config.models.agents_dir {
        Some(dir) => Some(
            watch_agents_dir(
                dir.clone(),
                config.models.watch_interval,
                models.agents.clone(),
                config.org_domain.clone(),
            )
            .await,
        ),
        None => None,
    };

    // Guardrail rules naming stored plugins get their newest version
    // before the first call, then follow new ones on every replica.
    crate::guardrails::follow_stored(
        &guardrails,
        plugin_store,
        plugin_runtime,
        std::time::Duration::from_secs(config.plugins.watch_interval_seconds),
        crate::guardrails::Admission {
            require_signed: config.plugins.require_signed,
            allow_grants: config.plugins.allowed_grants(),
        },
    )
    .await;

    // Periodic sync starts once the router is built; it is stopped before
    // the audit queue closes.
    let sync = match (&federation, config.federation.sync_interval_seconds) {
        (Some(federation), seconds) if seconds > 0 => {
            Some(federation.spawn_sync(std::time::Duration::from_secs(seconds)))
        }
        _ => None,
    };
    // The pruner's first pass runs now, then every interval; the task ends
    // with the runtime.
    let _pruner = pruner.map(|pruner| pruner.spawn());
    // The memory index follows other replicas' writes from here on (its
    // build at start saw everything committed before); the task ends with
    // the runtime.
    let _memory_follower = memory_follower.follow(config.memory.follow_interval());
    let scheme = if tls.is_some() { "https" } else { "http" };
    // SIGHUP and changed files reload what can change live (issue 22);
    // the SIGHUP handler is in place before the listening line is printed.
    let reloads = reloader.spawn(
        (config.reload_watch_interval_seconds > 0)
            .then(|| std::time::Duration::from_secs(config.reload_watch_interval_seconds)),
    );
    // SIGTERM's handler too, so a stop right after start-up drains.
    let stop_signal = shutdown_signal();
    say!("convergio listening on {scheme}://{local}");
    say!(
        "  database     {}",
        convergio_store::redact(&config.database_url)
    );
    say!("  admin token  {token_source}");
    say!("  auth         {}", describe_auth(&config.security));
    say!(
        "  upstreams    {} (network.allow_cidrs)",
        config.upstream_allow
    );
    say!("  graphs       http://{local}/v1/graphs, runs at /v1/runs, metrics at /metrics");
    say!(
        "  retention    {}",
        crate::retention::describe(&config.retention)
    );
    if let Some(federation) = &federation {
        say!(
            "  federation   {} (key {}, jwks at /.well-known/jwks.json)",
            federation.domain(),
            federation.key().kid()
        );
    }
    say!(
        "  model agents http://{local}/v1/model-agents ({} loopback slots{})",
        config.models.max_agents,
        config
            .models
            .agents_dir
            .as_ref()
            .map(|dir| format!(", declarations from {}", dir.display()))
            .unwrap_or_default()
    );
    if let Some(version) = policy_version {
        say!("  policy       version {version} (convergio policy show)");
    }
    if !examples.is_empty() {
        let names: Vec<&str> = ExampleAgent::ALL.iter().map(|agent| agent.name()).collect();
        say!(
            "  example agents at {scheme}://{local}/agents/{{{}}}",
            names.join(",")
        );
    }
    // On the stop signal `/readyz` turns 503 first; the listener closes
    // after `shutdown_delay`, then in-flight requests drain.
    let shutdown = readiness.drain_on(stop_signal, config.security.server.shutdown_delay);
    let served = serve_with(
        listener,
        router,
        config.security.server.clone(),
        tls,
        shutdown,
    )
    .await;
    // The server has stopped and its in-flight requests are answered, so
    // every decision they made is queued. Stop what could still make
    // registry changes, then close the audit queue and write what it holds:
    // sinks are still held (the registry's change hook, federation), so the
    // writer is told to finish rather than left to wait for them.
    watcher.stop();
    reloads.abort();
    if let Some(sync) = sync {
        sync.abort();
    }
    if let Some(agents_dir) = agents_dir {
        agents_dir.abort();
    }
    // Dropping the fleet's task drops its running agents, which stops them.
    fleet.abort();
    graph_fleet.abort();
    drop(tool_app);
    let drain = tokio::time::timeout(std::time::Duration::from_secs(30), audit_writer.finish());
    if drain.await.is_err() {
        eprintln!("warning: the audit queue did not drain within 30 s");
    }
    // Every request has answered: its spans are queued. Send them.
    telemetry.shutdown().await;
    served.context("serving")?;
    for agent in examples {
        agent.shutdown().await;
    }
    say!("convergio stopped");
    Ok(())
}

/// Opens the peer store, sets federation up over the organisation key,
/// syncing into `registry` (built with `card_keys` as its organisation
/// keys), and stores the configured peers.
async fn start_federation(
    config: &Config,
    db: &convergio_store::Db,
    key: Arc<OrgSigningKey>,
    registry: Registry,
    card_keys: Arc<FederationCardKeys>,
) -> anyhow::Result<Arc<Federation>> {
    let store = Arc::new(convergio_store::registry::Peers::new(db));
    let federation = Arc::new(
        Federation::new(
            FederationConfig {
                domain: config.federation.domain.clone(),
                clock_window: std::time::Duration::from_secs(config.federation.clock_skew_seconds),
                discovery_timeout: std::time::Duration::from_millis(
                    config.federation.discovery_timeout_ms,
                ),
                allow: config.upstream_allow.clone(),
                max_hops: config.federation.max_hops,
                discovery_max_pages: config.federation.discovery_max_pages,
                discovery_max_agents: config.federation.discovery_max_agents,
                jwks_refetch_interval: std::time::Duration::from_secs(
                    config.federation.jwks_refetch_interval_seconds,
                ),
                accept_rotated_keys: config.federation.accept_rotated_keys,
            },
            key,
            store,
            registry,
            card_keys,
        )
        .context("setting up federation")?
        .with_call_outcomes(Arc::new(convergio_store::registry::PeerCalls::new(db))),
    );
    for peer in &config.federation.peers {
        federation
            .add(peer, true)
            .await
            .with_context(|| format!("storing the configured peer {}", peer.domain))?;
    }
    Ok(federation)
}

/// The organisation's signing key: the configured file, else the data
/// dir's, generated (owner-only) on first start.
fn signing_key(config: &Config) -> anyhow::Result<OrgSigningKey> {
    if let Some(path) = &config.federation.signing_key_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the signing key {}", path.display()))?;
        return OrgSigningKey::from_pem(&text)
            .with_context(|| format!("parsing the signing key {}", path.display()));
    }
    let path = config.data_dir.join(SIGNING_KEY_FILE_NAME);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the signing key {}", path.display()))?;
        return OrgSigningKey::from_pem(&text)
            .with_context(|| format!("parsing the signing key {}", path.display()));
    }
    let key = OrgSigningKey::generate().context("generating the signing key")?;
    write_private(&path, key.to_pem().trim_end())?;
    Ok(key)
}

/// The `Authenticate` checks the configuration asks for.
async fn build_authenticator(
    security: &SecuritySettings,
    admin_token: &str,
    api_keys: Option<Arc<StoredApiKeys>>,
) -> anyhow::Result<Authenticator> {
    let jwt = security.jwt.as_ref().map(|jwt| {
        let source = match (&jwt.jwks_file, &jwt.jwks_url) {
            (Some(file), _) => JwksSource::File(file.clone()),
            (None, Some(url)) => JwksSource::Url(url.clone()),
            (None, None) => JwksSource::Static(convergio_auth::KeySet::default()),
        };
        JwtAuthConfig::new(
            JwtConfig {
                issuer: jwt.issuer.clone(),
                audience: jwt.audience.clone(),
                leeway_seconds: jwt.leeway_seconds,
                org_claim: jwt.org_claim.clone(),
                subject_claim: jwt.subject_claim.clone(),
                key_ttl: std::time::Duration::from_secs(jwt.key_ttl_seconds),
                ..JwtConfig::default()
            },
            source,
        )
    });
    let api_keys = api_keys.map(|keys| keys as Arc<dyn ApiKeyVerifier>);
    Authenticator::new(AuthenticateConfig {
        anonymous: security.anonymous,
        admin_token: Some(admin_token.to_owned()),
        jwt,
        api_keys,
        mtls: security.mtls.as_ref().map(|mtls| MtlsConfig {
            scopes: mtls.scopes.clone(),
        }),
    })
    .await
    .context("setting up authentication")
}

/// One line saying which credentials are accepted.
fn describe_auth(security: &SecuritySettings) -> String {
    let mut accepted = vec!["admin token"];
    if security.api_keys {
        accepted.push("api keys");
    }
    if security.jwt.is_some() {
        accepted.push("jwt");
    }
    if security.mtls.is_some() {
        accepted.push("client certificates");
    }
    let anonymous = if security.anonymous {
        "anonymous allowed"
    } else {
        "credentials required"
    };
    format!("{} ({anonymous})", accepted.join(", "))
}

/// Builds the policy store on `db`, loads the active set (storing the
/// embedded example on first start), starts the watcher that keeps this
/// replica on the active version, the audit writer, and the quota enforcer
/// (also in the services; returned for reloads).
async fn start_policy(
    config: &Config,
    db: convergio_store::Db,
) -> anyhow::Result<(
    PolicyServices,
    convergio_policy::AuditWriter,
    convergio_policy::PolicyWatcher,
    Arc<convergio_policy::Quotas>,
)> {
    let store = Arc::new(convergio_store::policy::PolicyStore::new(db));
    let engine = std::sync::Arc::new(
        convergio_policy::PolicyEngine::with_defaults().context("loading the Cedar schema")?,
    );
    let admin = convergio_policy::PolicyAdmin::new(engine, store);
    admin
        .bootstrap()
        .await
        .context("loading the active policy set")?;
    let watcher = convergio_policy::PolicyWatcher::spawn(
        admin.clone(),
        convergio_policy::DEFAULT_POLL_INTERVAL,
    );
    let (audit, writer) = convergio_policy::AuditSink::spawn(
        admin.audit().clone(),
        convergio_policy::DEFAULT_AUDIT_QUEUE,
    );
    // Always an enforcer, without limits when none is configured, so a
    // reload can set some (issue 22).
    let quotas = std::sync::Arc::new(convergio_policy::Quotas::new(
        config.quotas.clone().unwrap_or_default(),
    ));
    Ok((
        PolicyServices {
            admin,
            audit,
            quotas: Some(quotas.clone()),
        },
        writer,
        watcher,
        quotas,
    ))
}

/// The admin token and a sentence saying where it comes from.
fn admin_token(config: &Config) -> anyhow::Result<(String, String)> {
    if let Some(token) = &config.admin_token {
        return Ok((token.clone(), "from configuration".to_owned()));
    }
    let path = config.data_dir.join("admin-token");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let token = text.trim().to_owned();
        if token.len() >= 16 {
            return Ok((token, format!("stored in {}", path.display())));
        }
    }
    let token = format!(
        "cvg_admin_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    write_private(&path, &token)?;
    Ok((token, format!("generated and stored in {}", path.display())))
}

/// The role each example agent plays in the design document's terms.
fn example_role(agent: ExampleAgent) -> AgentRole {
    match agent {
        ExampleAgent::SecurityExpert
        | ExampleAgent::PerformanceExpert
        | ExampleAgent::StyleChecker
        | ExampleAgent::Arbiter => AgentRole::Critic,
        ExampleAgent::ReviewAggregator | ExampleAgent::ProjectManager => AgentRole::Supervisor,
        ExampleAgent::IntentClassifier => AgentRole::Router,
        ExampleAgent::Planner => AgentRole::Planner,
        ExampleAgent::Echo
        | ExampleAgent::CodeAnalyzer
        | ExampleAgent::ReportGenerator
        | ExampleAgent::Advocate
        | ExampleAgent::Critic
        | ExampleAgent::VerdictWriter
        | ExampleAgent::BillingSpecialist
        | ExampleAgent::TechSupport
        | ExampleAgent::Generalist
        | ExampleAgent::Estimator
        | ExampleAgent::Summarizer => AgentRole::Worker,
    }
}

/// The SSRF allow-list: the configured entries plus exactly the loopback
/// sockets of the example agents this server started and of the model
/// agents' slots (nothing else on loopback becomes reachable by default).
/// A list of its own (see [`AllowList`]): a reload replaces it and the
/// configured one each.
fn upstream_allow(config: &Config, own_sockets: &[SocketAddr]) -> AllowList {
    let mut allow = config.upstream_allow.clone();
    for socket in own_sockets {
        allow.allow_socket(*socket);
    }
    allow
}

/// Each started example agent's name and loopback socket.
fn example_sockets(
    examples: &[(ExampleAgent, RunningAgent)],
) -> anyhow::Result<Vec<(String, SocketAddr)>> {
    examples
        .iter()
        .map(|(agent, running)| {
            let socket = running
                .base_url
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .parse()
                .with_context(|| format!("example agent address {}", running.base_url))?;
            Ok((agent.name().to_owned(), socket))
        })
        .collect()
}

/// Starts every example agent on a loopback port.
async fn spawn_examples() -> anyhow::Result<Vec<(ExampleAgent, RunningAgent)>> {
    let mut running = Vec::new();
    for agent in ExampleAgent::ALL {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a loopback port for an example agent")?;
        let spawned = convergio_agents::spawn(agent, listener, ServeOptions::default())
            .await
            .with_context(|| format!("starting example agent {}", agent.name()))?;
        running.push((agent, spawned));
    }
    Ok(running)
}

/// Registers (or refreshes) each started example agent as one of this
/// deployment's `internal` agents.
async fn register_examples(
    registry: &Registry,
    examples: Vec<(ExampleAgent, RunningAgent)>,
) -> anyhow::Result<Vec<RunningAgent>> {
    let mut running = Vec::with_capacity(examples.len());
    for (agent, spawned) in examples {
        registry
            .upsert_system(Registration {
                name: Some(agent.name().to_owned()),
                org: None,
                role: Some(example_role(agent)),
                card: spawned.card(),
                upstreams: None,
                trust: None,
            })
            .await
            .with_context(|| format!("registering example agent {}", agent.name()))?;
        running.push(spawned);
    }
    Ok(running)
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when
/// this is called, not when the future is first polled: called before the
/// listening line is printed, a signal sent the moment the server answers
/// is never met by the default action (exit by signal, exit status not 0).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let terminate = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        let wait = |stream: Option<tokio::signal::unix::Signal>| async move {
            match stream {
                Some(mut stream) => {
                    stream.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        async move {
            tokio::select! {
                () = wait(terminate) => {},
                () = wait(interrupt) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Push notifications through the gateway (issue 24), unless `push.enabled`
/// is off: the webhook the agents are given is `push.webhook_base_url`, else
/// this listener's address (loopback when it listens on every address).
fn push_service(
    config: &Config,
    db: &convergio_store::Db,
    local: SocketAddr,
    tls: bool,
    allow: &convergio_gateway::ssrf::AllowList,
    signing_key: &Option<Arc<convergio_auth::org_key::OrgSigningKey>>,
) -> anyhow::Result<Option<Arc<convergio_gateway::a2a::push::Push>>> {
    if !config.push.enabled {
        return Ok(None);
    }
    let webhook_base = match &config.push.webhook_base_url {
        Some(base) => base.clone(),
        None => {
            let host = if local.ip().is_unspecified() {
                SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port())
            } else {
                local
            };
            format!("{}://{host}", if tls { "https" } else { "http" })
        }
    };
    let settings = convergio_gateway::a2a::push::PushSettings {
        webhook_base,
        max_attempts: config.push.max_attempts,
        first_retry: std::time::Duration::from_millis(config.push.first_retry_ms),
        attempt_timeout: std::time::Duration::from_millis(config.push.attempt_timeout_ms),
        sweep_interval: std::time::Duration::from_secs(config.push.sweep_interval_seconds),
    };
    let push = convergio_gateway::a2a::push::Push::new(
        Arc::new(convergio_store::registry::PushTables::new(db)),
        settings,
        allow.clone(),
        signing_key
            .clone()
            .map(|key| key as Arc<dyn convergio_auth::card_signature::CardSigner>),
    )
    .context("building the push notification client")?;
    Ok(Some(Arc::new(push)))
}
