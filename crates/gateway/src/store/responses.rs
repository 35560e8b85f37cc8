//! Stored Responses (`/v1/responses` with `store`): the rows, their group-committing
//! writer, and the queries that rebuild a conversation.

use std::collections::HashMap;

use serde_json::Value;

use super::{Db, Store, StoreError};

/// A stored Response (`/v1/responses` with `store`).
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub id: String,
    /// The key that created it (`""` when authentication is off): only it may read it.
    pub owner: String,
    pub created_at: i64,
    pub previous_id: Option<String>,
    pub model: String,
    /// The provider whose own Responses API made it (pass-through): its output items'
    /// ids are that upstream's. `None`: the gateway translated it.
    pub served_by: Option<String>,
    /// This turn's input items.
    pub input_items: Value,
    pub response: Value,
}

/// Writes stored Responses with group commit: each caller waits for its own row to be
/// committed (so the next turn, on any instance, finds it), and rows that arrive while a
/// transaction runs share the next one.
#[derive(Clone)]
pub struct ResponseWriter {
    tx: tokio::sync::mpsc::Sender<Job>,
}

/// A row to store with where to acknowledge it; or (no row) a flush to acknowledge once
/// everything before it is written.
type Job = (
    Option<StoredResponse>,
    tokio::sync::oneshot::Sender<Result<(), StoreError>>,
);

/// Most rows in one transaction.
const RESPONSE_BATCH: usize = 64;

impl ResponseWriter {
    pub fn start(store: Store) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Job>(1024);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < RESPONSE_BATCH {
                    match rx.try_recv() {
                        Ok(x) => batch.push(x),
                        Err(_) => break,
                    }
                }
                let mut flushes = Vec::new();
                let (rows, acks): (Vec<_>, Vec<_>) = batch
                    .into_iter()
                    .filter_map(|(row, ack)| match row {
                        Some(r) => Some((r, ack)),
                        None => {
                            flushes.push(ack);
                            None
                        }
                    })
                    .unzip();
                if rows.is_empty() {
                    for f in flushes {
                        let _ = f.send(Ok(()));
                    }
                    continue;
                }
                let result = store.insert_responses(&rows).await;
                if result.is_err() && rows.len() > 1 {
                    // One bad row must not fail the others: each on its own.
                    for (row, ack) in rows.into_iter().zip(acks) {
                        let r = store.insert_responses(std::slice::from_ref(&row)).await;
                        let _ = ack.send(r);
                    }
                } else {
                    for ack in acks {
                        let _ = ack.send(result.clone());
                    }
                }
                for f in flushes {
                    let _ = f.send(Ok(()));
                }
            }
        });
        Self { tx }
    }

    /// At shutdown: waits (at most `within`) until every Response queued so far is
    /// written.
    pub async fn flush(&self, within: std::time::Duration) {
        let (ack, done) = tokio::sync::oneshot::channel();
        let wait = async {
            self.tx.send((None, ack)).await.ok()?;
            done.await.ok()
        };
        if tokio::time::timeout(within, wait)
            .await
            .ok()
            .flatten()
            .is_none()
        {
            tracing::warn!("stored Responses not all written at shutdown");
        }
    }

    /// Stores `r`; returns when it is committed.
    pub async fn write(&self, r: StoredResponse) -> Result<(), StoreError> {
        let (ack, done) = tokio::sync::oneshot::channel();
        self.tx
            .send((Some(r), ack))
            .await
            .map_err(|_| StoreError("the response writer has stopped".into()))?;
        done.await
            .map_err(|_| StoreError("the response writer has stopped".into()))?
    }
}

/// One turn of a stored conversation.
#[derive(Debug, Clone)]
pub struct Turn {
    pub input: Value,
    pub response: Value,
    pub served_by: Option<String>,
    /// The size of its input and output items (JSON text), for the prompt-size estimate
    /// of a continuation.
    pub bytes: usize,
}

/// A stored conversation, oldest turn first.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub turns: Vec<Turn>,
    /// The id of an earlier turn the chain names but the store no longer has (deleted).
    pub missing: Option<String>,
}

/// Most `item_reference`s resolved for one request.
pub const MAX_ITEM_LOOKUPS: usize = 2048;
/// Ids per lookup query (well under SQLite's bound-parameter limit).
const LOOKUP_CHUNK: usize = 256;

/// `$from, $from+1, …` (`n` of them).
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The ids of a stored Response's input and output items (each once), for the
/// `response_items` index. An id keeps its first holder: a later turn that stores the same
/// item again (a resolved `item_reference`) does not move it, so an item stays known as the
/// output of the turn that made it.
fn item_ids(r: &StoredResponse) -> Vec<&str> {
    let mut ids: Vec<&str> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let items = r
        .input_items
        .as_array()
        .into_iter()
        .flatten()
        .chain(r.response["output"].as_array().into_iter().flatten());
    for item in items {
        if let Some(id) = item["id"].as_str().filter(|id| !id.is_empty()) {
            if seen.insert(id) {
                ids.push(id);
            }
        }
    }
    ids
}

impl Store {
    /// Keeps Responses and the input items of their turns, in one transaction. An id
    /// already stored is left as it is (never overwritten: it may be another key's).
    pub async fn insert_responses(&self, rows: &[StoredResponse]) -> Result<(), StoreError> {
        with_pool!(self, |pool, DB| {
            let mut tx = pool.begin().await?;
            for r in rows {
                sqlx::query(
                    "INSERT INTO responses (id, owner, created_at, previous_id, model, served_by, input_items, response) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&r.id)
                .bind(&r.owner)
                .bind(r.created_at)
                .bind(&r.previous_id)
                .bind(&r.model)
                .bind(&r.served_by)
                .bind(r.input_items.to_string())
                .bind(r.response.to_string())
                .execute(&mut *tx)
                .await?;
                for id in item_ids(r) {
                    sqlx::query(
                        "INSERT INTO response_items (owner, id, response_id) VALUES ($1, $2, $3) ON CONFLICT (owner, id) DO NOTHING",
                    )
                    .bind(&r.owner)
                    .bind(id)
                    .bind(&r.id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The Response `id` if `owner` stored it.
    pub async fn response(&self, id: &str, owner: &str) -> Result<Option<Value>, StoreError> {
        with_pool!(self, |pool, DB| {
            let text: Option<String> =
                sqlx::query_scalar("SELECT response FROM responses WHERE id = $1 AND owner = $2")
                    .bind(id)
                    .bind(owner)
                    .fetch_optional(pool)
                    .await?;
            Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
        })
    }

    /// Deletes at most `limit` stored Responses created before `before` (Unix seconds);
    /// how many.
    pub async fn sweep_responses(&self, before: i64, limit: i64) -> Result<u64, StoreError> {
        with_pool!(self, |pool, DB| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "DELETE FROM response_items WHERE response_id IN (SELECT id FROM responses WHERE created_at < $1 ORDER BY created_at, id LIMIT $2)",
            )
            .bind(before)
            .bind(limit)
            .execute(&mut *tx)
            .await?;
            let r = sqlx::query(
                "DELETE FROM responses WHERE id IN (SELECT id FROM responses WHERE created_at < $1 ORDER BY created_at, id LIMIT $2)",
            )
            .bind(before)
            .bind(limit)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(r.rows_affected())
        })
    }

    /// The items `ids` among `owner`'s stored Responses (their input and output items), by
    /// id, each with `Some(served_by)` of its Response when it is an output item (`None`:
    /// an input item); ids not found are absent. `None` when the Responses holding them come
    /// to more than `max_bytes` of JSON (they are loaded whole). At most [`MAX_ITEM_LOOKUPS`] ids are looked up.
    pub async fn response_items(
        &self,
        owner: &str,
        ids: &[String],
        max_bytes: usize,
    ) -> Result<Option<HashMap<String, (Value, Option<Option<String>>)>>, StoreError> {
        let ids = &ids[..ids.len().min(MAX_ITEM_LOOKUPS)];
        let mut holders = std::collections::BTreeSet::new();
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            let sql = format!(
                "SELECT DISTINCT response_id FROM response_items WHERE owner = $1 AND id IN ({})",
                placeholders(2, chunk.len())
            );
            let found: Vec<String> = with_pool!(self, |pool, DB| {
                let mut q = sqlx::query_scalar::<DB, String>(&sql).bind(owner);
                for id in chunk {
                    q = q.bind(id);
                }
                q.fetch_all(pool).await?
            });
            holders.extend(found);
        }
        let wanted: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        let holders: Vec<String> = holders.into_iter().collect();
        let mut out = HashMap::new();
        let mut loaded = 0;
        for chunk in holders.chunks(LOOKUP_CHUNK) {
            let sql = format!(
                "SELECT input_items, response, served_by FROM responses WHERE owner = $1 AND id IN ({})",
                placeholders(2, chunk.len())
            );
            let rows: Vec<(String, String, Option<String>)> = with_pool!(self, |pool, DB| {
                let mut q =
                    sqlx::query_as::<DB, (String, String, Option<String>)>(&sql).bind(owner);
                for id in chunk {
                    q = q.bind(id);
                }
                q.fetch_all(pool).await?
            });
            for (input, response, served_by) in rows {
                loaded += input.len() + response.len();
                if loaded > max_bytes {
                    return Ok(None);
                }
                let input: Value = serde_json::from_str(&input)
                    .map_err(|e| StoreError(format!("stored response input: {e}")))?;
                let response: Value = serde_json::from_str(&response)
                    .map_err(|e| StoreError(format!("stored response: {e}")))?;
                let items = input
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| (i, None))
                    .chain(
                        response["output"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|i| (i, Some(served_by.clone()))),
                    );
                for (item, by) in items {
                    if let Some(id) = item["id"].as_str().filter(|id| wanted.contains(id)) {
                        out.insert(id.to_owned(), (item.clone(), by));
                    }
                }
            }
        }
        Ok(Some(out))
    }

    /// Deletes the Response `id` if `owner` stored it; whether it was there.
    pub async fn delete_response(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        with_pool!(self, |pool, DB| {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM response_items WHERE response_id = $1 AND owner = $2")
                .bind(id)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
            let r = sqlx::query("DELETE FROM responses WHERE id = $1 AND owner = $2")
                .bind(id)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(r.rows_affected() > 0)
        })
    }

    /// The turns of the conversation ending at `id` (its own turn included), oldest
    /// first, following `previous_response_id` through `owner`'s responses, at most
    /// `max_turns`. `None` when `owner` has no response `id`. A deleted turn ends the walk
    /// and is named in [`Conversation::missing`].
    pub async fn conversation(
        &self,
        id: &str,
        owner: &str,
        max_turns: i32,
    ) -> Result<Option<Conversation>, StoreError> {
        const SQL: &str = "WITH RECURSIVE chain(id, previous_id, served_by, input_items, response, depth) AS (
            SELECT id, previous_id, served_by, input_items, response, 0 FROM responses WHERE id = $1 AND owner = $2
            UNION ALL
            SELECT r.id, r.previous_id, r.served_by, r.input_items, r.response, c.depth + 1
              FROM responses r JOIN chain c ON r.id = c.previous_id
             WHERE r.owner = $2 AND c.depth + 1 < $3
        ) SELECT previous_id, served_by, input_items, response FROM chain ORDER BY depth DESC";
        with_pool!(self, |pool, DB| {
            let rows: Vec<(Option<String>, Option<String>, String, String)> = sqlx::query_as(SQL)
                .bind(id)
                .bind(owner)
                .bind(max_turns)
                .fetch_all(pool)
                .await?;
            if rows.is_empty() {
                return Ok(None);
            }
            let full = i32::try_from(rows.len()).unwrap_or(i32::MAX) >= max_turns;
            let missing = match rows.first() {
                Some((Some(previous), _, _, _)) if !full => Some(previous.clone()),
                _ => None,
            };
            let mut turns = Vec::with_capacity(rows.len());
            for (_, served_by, input, response) in rows {
                let input_bytes = input.len();
                let input: Value = serde_json::from_str(&input)
                    .map_err(|e| StoreError(format!("stored response input: {e}")))?;
                let response: Value = serde_json::from_str(&response)
                    .map_err(|e| StoreError(format!("stored response: {e}")))?;
                let bytes = input_bytes + response["output"].to_string().len();
                turns.push(Turn {
                    input,
                    response,
                    served_by,
                    bytes,
                });
            }
            Ok(Some(Conversation { turns, missing }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn flush_returns_once_everything_queued_before_it_is_written() {
        let dir = std::env::temp_dir().join(format!(
            "jinf-responses-{}-{}",
            std::process::id(),
            crate::usage::unique_id()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let store = Store::open(&format!("sqlite://{}", dir.join("r.db").display()))
            .await
            .expect("store");
        let writer = ResponseWriter::start(store.clone());
        // Rows whose writers nobody waits for (a stream cut off at shutdown leaves its
        // save behind); on this one-thread runtime the writer task has not run yet.
        for i in 0..200 {
            let row = StoredResponse {
                id: format!("resp_{i}"),
                owner: "k".into(),
                created_at: 1,
                previous_id: None,
                model: "m".into(),
                served_by: None,
                input_items: serde_json::json!([]),
                response: serde_json::json!({"id": format!("resp_{i}"), "output": []}),
            };
            let (ack, _) = tokio::sync::oneshot::channel();
            writer.tx.send((Some(row), ack)).await.expect("queued");
        }
        writer.flush(std::time::Duration::from_secs(10)).await;
        // One read, at once: without the flush having waited, the writer would still be
        // on its first batches (64 rows each).
        let stored = store
            .count_for_tests("SELECT COUNT(*) FROM responses")
            .await
            .expect("count");
        assert_eq!(stored, 200, "every row queued before the flush is written");
    }
}
