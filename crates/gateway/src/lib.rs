//! The jusinfer gateway: the axum server (auth, routing, provider clients, store) and the
//! operations behind the CLI. The request path is a fixed sequence of stages, each in its
//! own module: read + validate (`handlers`), authenticate (`auth`), route (`routing`),
//! attempt (`proxy`, `providers`), respond.

pub mod app;
pub mod auth;
pub mod body;
pub mod calendar;
pub mod config;
pub mod conns;
pub mod error;
pub(crate) mod handlers;
pub mod health;
pub mod keys;
pub mod ledger;
pub mod lifecycle;
pub mod limits;
pub mod metrics;
pub(crate) mod pipeline;
pub mod portal;
pub mod pricing;
pub mod proxy;
mod redis_conn;
pub mod retention;
pub mod routing;
pub mod server;
pub mod state;
pub mod store;
pub mod upstream;
pub mod usage;

pub use app::app;
pub use server::serve;
pub use state::AppState;

/// What the fuzz targets drive (`fuzz/`): the request readers and the body editor, reached
/// without the server.
pub mod fuzzing {
    pub use crate::pipeline::dialects::chat::validate as validate_chat;
    pub use crate::pipeline::dialects::embeddings::EmbeddingsRequest;
    pub use crate::pipeline::read::parse_json;
    pub use crate::upstream::openai::edit_body;
}
