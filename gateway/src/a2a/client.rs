//! The pooled HTTP client the gateway forwards with (hyper-util legacy
//! client over plain HTTP; TLS upstreams arrive with the security issue).

use std::time::Duration;

use axum::body::Body;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A cheap-to-clone pooled client.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    pub(crate) client: Client<HttpConnector, Body>,
}

// === impl UpstreamClient ===

impl UpstreamClient {
    /// A client keeping idle connections for 90 s.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector);
        Self { client }
    }
}

impl Default for UpstreamClient {
    fn default() -> Self {
        Self::new()
    }
}
