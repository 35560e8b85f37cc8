//! What tests and the simulator share, without a server: the recorded provider traffic
//! (`fixtures`) and the streams a provider would have sent for a recorded answer
//! (`streamify`, `anthropic::streamify`); and the micro-benchmarks' harness (`bench`). `translate`'s tests use it alone, so they build
//! without the HTTP stack.

pub mod anthropic;
pub mod bench;
pub mod fixtures;
pub mod streamify;
