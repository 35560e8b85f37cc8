//! Upstream simulator for tests and benchmarks.
//!
//! Serves OpenAI-shaped Chat Completions by replaying the recorded provider traffic in
//! `shared/fixtures/`, turns recorded non-streaming completions into streams of several
//! upstream "styles" (the standard fragment shape, and the broken shapes some compatible
//! servers send), injects faults (status codes, delays, broken SSE, truncated JSON,
//! mid-stream disconnects, wrong content types), and records every request it received so
//! tests can assert what the gateway sent upstream.
//!
//! The scenario is chosen by the upstream model name: `scenario[;key=value...]`, e.g.
//! `parallel;style=whole` or `text;status=503`. See [`scenario::Scenario`] for the keys.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
mod canned;
pub mod gemini;
mod pace;
pub mod probe;
pub mod scenario;
pub mod server;
pub mod vertex;

pub use jusinfer_testkit::{fixtures, streamify};

pub use server::{app, SimState};
