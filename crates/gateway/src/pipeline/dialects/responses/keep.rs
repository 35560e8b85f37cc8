//! Keeping a finished Response (`store` not false): the [`Keeper`] writes it through the
//! Responses writer before the client gets its last event, so a client holding the last
//! event can already continue from it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::store::{ResponseWriter, StoredResponse};
use crate::upstream::http;

/// How long keeping a Response may hold up the end of its answer.
const KEEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Stores finished Responses of one request (`store` not false).
pub(crate) struct Keeper {
    pub writer: ResponseWriter,
    pub owner: String,
    pub previous_id: Option<String>,
    pub model: String,
    /// This turn's input items.
    pub input_items: Value,
}

impl Keeper {
    /// Stores `r` (its own `id`: the gateway's, or the pass-through upstream
    /// `served_by`'s). A store that fails or hangs costs the client nothing but the stored
    /// copy: logged.
    pub(crate) async fn save(&self, r: &Value, served_by: Option<&str>) {
        let mut response = r.clone();
        if self.previous_id.is_some() && response["previous_response_id"].is_null() {
            // A pass-through upstream got the conversation, not the id.
            response["previous_response_id"] = json!(self.previous_id);
        }
        let row = StoredResponse {
            id: r["id"].as_str().unwrap_or_default().to_owned(),
            owner: self.owner.clone(),
            created_at: r["created_at"].as_i64().unwrap_or_else(crate::store::now),
            previous_id: self.previous_id.clone(),
            model: self.model.clone(),
            served_by: served_by.map(str::to_owned),
            input_items: self.input_items.clone(),
            response,
        };
        if row.id.is_empty() {
            tracing::warn!("a Response without an id was not stored");
            return;
        }
        let id = row.id.clone();
        match tokio::time::timeout(KEEP_TIMEOUT, self.writer.write(row)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(response_id = %id, error = %e, "response not stored"),
            Err(_) => {
                tracing::warn!(response_id = %id, "response not stored: the database did not answer in time")
            }
        }
    }

    pub(crate) fn keep(self: &Arc<Self>, served_by: Option<&str>) -> http::Keep {
        let me = Arc::clone(self);
        let served_by = served_by.map(str::to_owned);
        Box::new(move |v| Box::pin(async move { me.save(&v, served_by.as_deref()).await }))
    }
}
