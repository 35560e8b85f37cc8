//! Automatic prompt-cache breakpoints for Anthropic upstreams (opt-in per provider or
//! alias: `auto_cache`).
//!
//! Chat and Responses clients (Codex, the AI SDK, LangChain…) send no `cache_control`, so
//! every turn of a long agent session would pay full input price. Anthropic caches the
//! prompt prefix up to each breakpoint (tools → system → messages) and, at each breakpoint,
//! looks back up to 20 blocks for a prefix written earlier. So, in order of worth and up to
//! Anthropic's 4 breakpoints counting the client's own (which are left alone):
//!
//! 1. the last block of the last message: the whole conversation so far is written, and
//!    read back on the next turn;
//! 2. the end of `system` (or the last tool when there is no system prompt): tools and
//!    system are read back by a new conversation with the same set-up;
//! 3. the last block of the user turn before the last one: the previous turn's prefix stays
//!    reachable when one turn adds more than 20 blocks (many tool results).
//!
//! Prompts under `min_tokens` (estimated at 4 bytes a token) get none: Anthropic does not
//! cache them anyway. Nor do requests whose own breakpoints set a `ttl`: Anthropic wants
//! longer-lived entries first, and ours (5 minutes) could break that order.

use jusinfer_wire::anthropic::{Block, Content, MessagesRequest, Role, System, ToolResultContent};
use serde_json::{json, Value};

/// Anthropic's most breakpoints in one request.
pub const MAX_BREAKPOINTS: usize = 4;

fn ephemeral() -> Value {
    json!({"type": "ephemeral"})
}

fn block_mark(b: &mut Block) -> Option<&mut Option<Value>> {
    match b {
        Block::Text { cache_control, .. }
        | Block::Image { cache_control, .. }
        | Block::ToolUse { cache_control, .. }
        | Block::ToolResult { cache_control, .. } => Some(cache_control),
        _ => None,
    }
}

fn blocks_of(content: &mut Content) -> &mut Vec<Block> {
    if let Content::Text(s) = content {
        *content = Content::Blocks(vec![Block::Text {
            text: std::mem::take(s),
            cache_control: None,
        }]);
    }
    match content {
        Content::Blocks(b) => b,
        Content::Text(_) => unreachable!("converted above"),
    }
}

/// The client's own breakpoints: how many, and whether any sets a `ttl` (Anthropic wants
/// longer-lived entries before shorter ones, so ours, 5-minute, could only break the order).
fn existing(req: &MessagesRequest) -> (usize, bool) {
    fn blocks(bs: &[Block], seen: &mut (usize, bool)) {
        for b in bs {
            let mark = match b {
                Block::Text { cache_control, .. }
                | Block::Image { cache_control, .. }
                | Block::ToolUse { cache_control, .. } => cache_control,
                Block::ToolResult {
                    cache_control,
                    content,
                    ..
                } => {
                    if let ToolResultContent::Blocks(inner) = content {
                        blocks(inner, seen);
                    }
                    cache_control
                }
                _ => continue,
            };
            see(mark, seen);
        }
    }
    fn see(mark: &Option<Value>, seen: &mut (usize, bool)) {
        if let Some(c) = mark {
            seen.0 += 1;
            seen.1 |= c.get("ttl").is_some();
        }
    }
    let mut seen = (0, false);
    for t in req.tools.iter().flatten() {
        see(&t.cache_control, &mut seen);
    }
    if let Some(System::Blocks(b)) = &req.system {
        blocks(b, &mut seen);
    }
    for m in &req.messages {
        if let Content::Blocks(b) = &m.content {
            blocks(b, &mut seen);
        }
    }
    seen
}

/// Marks the last markable block of message `i`; whether a breakpoint was added.
fn mark_message(req: &mut MessagesRequest, i: usize) -> bool {
    let Some(m) = req.messages.get_mut(i) else {
        return false;
    };
    let bs = blocks_of(&mut m.content);
    match bs.iter_mut().rev().find_map(block_mark) {
        Some(c) if c.is_none() => {
            *c = Some(ephemeral());
            true
        }
        _ => false,
    }
}

/// Marks the end of `system`, or the last tool when there is none.
fn mark_prefix(req: &mut MessagesRequest) -> bool {
    match &mut req.system {
        Some(System::Text(s)) if !s.is_empty() => {
            req.system = Some(System::Blocks(vec![Block::Text {
                text: std::mem::take(s),
                cache_control: Some(ephemeral()),
            }]));
            true
        }
        Some(System::Blocks(bs)) => match bs.iter_mut().rev().find_map(block_mark) {
            Some(c) if c.is_none() => {
                *c = Some(ephemeral());
                true
            }
            _ => false,
        },
        _ => match req.tools.as_mut().and_then(|t| t.last_mut()) {
            Some(t) if t.cache_control.is_none() => {
                t.cache_control = Some(ephemeral());
                true
            }
            _ => false,
        },
    }
}

/// Adds breakpoints to `req` as the module docs say; how many were added.
pub fn add_breakpoints(req: &mut MessagesRequest, min_tokens: usize) -> usize {
    let (theirs, ttl) = existing(req);
    let mut budget = MAX_BREAKPOINTS.saturating_sub(theirs);
    if budget == 0 || ttl || req.messages.is_empty() {
        return 0;
    }
    let bytes =
        serde_json::to_vec(&(&req.tools, &req.system, &req.messages)).map_or(0, |b| b.len());
    if bytes / 4 < min_tokens {
        return 0;
    }
    let mut added = 0;
    let last = req.messages.len() - 1;
    let previous_user = req.messages[..last]
        .iter()
        .rposition(|m| m.role == Role::User);
    let steps: [&dyn Fn(&mut MessagesRequest) -> bool; 3] =
        [&|r| mark_message(r, last), &mark_prefix, &|r| {
            previous_user.is_some_and(|i| mark_message(r, i))
        }];
    for step in steps {
        if budget == 0 {
            break;
        }
        if step(req) {
            added += 1;
            budget -= 1;
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> MessagesRequest {
        serde_json::from_value(v).expect("request")
    }

    fn marks(r: &MessagesRequest) -> Vec<String> {
        let v = serde_json::to_value(r).expect("json");
        let mut out = Vec::new();
        fn walk(v: &Value, at: String, out: &mut Vec<String>) {
            match v {
                Value::Object(o) => {
                    if o.contains_key("cache_control") {
                        out.push(at.clone());
                    }
                    for (k, x) in o {
                        walk(x, format!("{at}.{k}"), out);
                    }
                }
                Value::Array(a) => {
                    for (i, x) in a.iter().enumerate() {
                        walk(x, format!("{at}[{i}]"), out);
                    }
                }
                _ => {}
            }
        }
        walk(&v, String::new(), &mut out);
        out
    }

    fn agent_turns(client_marks: bool) -> Value {
        let big = "rules ".repeat(1000);
        let mut tool_result = json!({"type": "tool_result", "tool_use_id": "t1", "content": "ok"});
        if client_marks {
            tool_result["cache_control"] = json!({"type": "ephemeral"});
        }
        json!({
            "model": "m", "max_tokens": 100, "system": big,
            "tools": [{"name": "a", "input_schema": {"type": "object"}},
                      {"name": "b", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "start"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "a", "input": {}}]},
                {"role": "user", "content": [tool_result]},
                {"role": "assistant", "content": "done?"},
                {"role": "user", "content": "go on"}
            ]
        })
    }

    #[test]
    fn marks_the_last_turn_the_system_and_the_turn_before() {
        let mut r = req(agent_turns(false));
        assert_eq!(add_breakpoints(&mut r, 1024), 3);
        assert_eq!(
            marks(&r),
            [
                ".messages[2].content[0]",
                ".messages[4].content[0]",
                ".system[0]"
            ]
        );
    }

    #[test]
    fn counts_the_clients_own_and_stops_at_four() {
        let mut r = req(agent_turns(true));
        // The client's breakpoint is on the turn before the last: ours fill the rest.
        assert_eq!(add_breakpoints(&mut r, 1024), 2);
        assert_eq!(existing(&r).0, 3);
        let mut full = req(agent_turns(true));
        if let Some(t) = full.tools.as_mut() {
            for t in t.iter_mut() {
                t.cache_control = Some(ephemeral());
            }
        }
        full.messages[0].content = Content::Blocks(vec![Block::Text {
            text: "start".into(),
            cache_control: Some(ephemeral()),
        }]);
        assert_eq!(existing(&full).0, 4);
        assert_eq!(add_breakpoints(&mut full, 1024), 0);
    }

    #[test]
    fn marks_inside_tool_results_count_and_a_ttl_means_hands_off() {
        let mut v = agent_turns(false);
        v["messages"][2]["content"][0]["content"] = json!([
            {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}]);
        let mut r = req(v);
        assert_eq!(existing(&r).0, 2);
        assert_eq!(add_breakpoints(&mut r, 1024), 2);
        assert_eq!(existing(&r).0, 4);
        let mut v = agent_turns(false);
        v["messages"][4]["content"] = json!([{"type": "text", "text": "go on",
            "cache_control": {"type": "ephemeral", "ttl": "1h"}}]);
        let mut r = req(v);
        assert_eq!(add_breakpoints(&mut r, 1024), 0);
    }

    #[test]
    fn short_prompts_get_none_and_no_system_marks_the_last_tool() {
        let mut small = req(json!({"model": "m", "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(add_breakpoints(&mut small, 1024), 0);
        assert!(marks(&small).is_empty());
        let mut v = agent_turns(false);
        v.as_object_mut().expect("obj").remove("system");
        v["messages"][0]["content"] = json!("x ".repeat(3000));
        let mut r = req(v);
        assert_eq!(add_breakpoints(&mut r, 1024), 3);
        assert!(marks(&r).contains(&".tools[1]".to_owned()));
    }
}
