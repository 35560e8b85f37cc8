//! The jusinfer gateway: the axum server and the operations behind the CLI. One request's
//! path is `pipeline::run` (authenticate → key slot → read → parse → route → prepare →
//! admit → attempt → record); an attempt is `upstream::execute`. ARCHITECTURE.md has the
//! map.
//!
//! What the binary (and the fuzz targets) use is exported below, deliberately; everything
//! else is `pub(crate)`, and `unreachable_pub` keeps it so.
#![warn(unreachable_pub)]

pub(crate) mod app;
pub(crate) mod auth;
pub(crate) mod body;
pub(crate) mod cache;
pub mod calendar;
pub mod config;
pub(crate) mod conns;
pub(crate) mod error;
pub(crate) mod handlers;
pub(crate) mod health;
pub mod keys;
pub(crate) mod ledger;
pub(crate) mod lifecycle;
pub(crate) mod limits;
pub(crate) mod metrics;
pub(crate) mod pipeline;
pub(crate) mod portal;
pub mod pricing;
pub(crate) mod proxy;
mod redis_conn;
pub(crate) mod reload;
pub(crate) mod retention;
pub(crate) mod routing;
pub(crate) mod server;
pub(crate) mod state;
pub mod store;
pub mod telemetry;
pub(crate) mod upstream;
pub(crate) mod usage;

pub use reload::Overrides;
pub use server::serve;
pub use state::AppState;

/// What the fuzz targets drive (`fuzz/`): the request readers and the body editor, reached
/// without the server.
pub mod fuzzing {
    pub use crate::pipeline::dialects::chat::validate as validate_chat;
    pub use crate::pipeline::read::parse_json;
    pub use crate::upstream::openai::edit_body;
    pub use jusinfer_wire::anthropic::MessageCreateParams;
    pub use jusinfer_wire::embeddings::EmbeddingCreateParams;
    pub use jusinfer_wire::responses::ResponseCreateParams;
}

/// What the micro-benchmarks (`benches/hot_path.rs`) time: the pieces of one request's
/// path that do not wait on the network, reached without the server.
pub mod bench {
    pub use crate::keys::{hash_key, KeyChecker};
    pub use crate::pipeline::read::parse_json;
    pub use crate::upstream::openai::{cost_spliced, edit_body};
    pub use crate::usage::UsageRecord;

    /// Counts a finished request's row in the process's metrics, as the ledger does.
    pub fn observe(row: &UsageRecord) {
        crate::metrics::get().observe(row);
    }

    /// A ledger row's unique id, as the ledger gives each row.
    pub fn row_id() -> String {
        crate::usage::unique_id()
    }
}
