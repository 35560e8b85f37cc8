//! Pure conversions and stream state machines between the dialects jusinfer speaks.
//!
//! Nothing here does I/O, reads a clock or spawns: every stream type is a state machine
//! with `push(event) -> frames out` and `finish() -> frames out`, fed by the caller's SSE
//! decoder. That keeps each translation testable byte for byte against recorded traffic.

pub mod chat_stream;
pub mod scan;
