//! The Convergio A2A gateway: the layer stack every request passes
//! ([`layers`]), A2A routing and forwarding to upstream agents ([`a2a`]),
//! the caller's identity ([`Principal`]) and the crate's error
//! ([`GatewayError`]).

pub mod a2a;
pub mod app;
pub mod authorize;
pub mod error;
pub mod layers;
mod registry_routes;

/// The caller's identity, shared with the other crates (defined in `convergio-schemas`).
pub use convergio_schemas::{AuthMethod, Principal};
pub use error::GatewayError;
pub use layers::with_layers;
pub use registry_routes::RegistryRoutes;
