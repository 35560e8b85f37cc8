//! Access to the recorded provider traffic in `shared/fixtures/`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use serde_json::Value;

/// The fixtures folder: `$JUSINFER_FIXTURES`, else `../shared/fixtures` beside the repo.
pub fn root() -> PathBuf {
    if let Ok(p) = std::env::var("JUSINFER_FIXTURES") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

/// Reads one fixture file.
pub fn read(rel: &str) -> anyhow::Result<Bytes> {
    let p = root().join(rel);
    let b = std::fs::read(&p).with_context(|| format!("reading fixture {}", p.display()))?;
    Ok(Bytes::from(b))
}

/// Reads one JSON fixture.
pub fn json(rel: &str) -> anyhow::Result<Value> {
    let b = read(rel)?;
    serde_json::from_slice(&b).with_context(|| format!("parsing fixture {rel}"))
}
