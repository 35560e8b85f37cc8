//! A strict reading of an SSE body, line by line, naming every way it departs from what
//! an OpenAI or Anthropic client parser accepts.

/// One event: its `event:` name (if any) and its `data`.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub events: Vec<Event>,
    /// Violations, in order (the first is the evidence).
    pub problems: Vec<String>,
    /// Saw `data: [DONE]`.
    pub done: bool,
    /// Non-blank bytes after `data: [DONE]`.
    pub after_done: bool,
}

/// Parses `body`. Lines must be SSE fields (`data:`, `event:`, `id:`, `retry:`) or comments
/// (`:`) or blank; a line that is none of those is a problem (typically JSON split across
/// lines). Events end at a blank line; the last one may end at the end of the body.
pub fn parse(body: &[u8]) -> Parsed {
    let mut p = Parsed::default();
    let Ok(text) = std::str::from_utf8(body) else {
        p.problems.push("the stream is not UTF-8".into());
        return p;
    };
    let mut name: Option<String> = None;
    let mut data: Vec<&str> = Vec::new();
    let flush = |name: &mut Option<String>, data: &mut Vec<&str>, p: &mut Parsed| {
        if !data.is_empty() {
            let d = data.join("\n");
            if p.done && !d.trim().is_empty() {
                p.after_done = true;
            }
            if d.trim() == "[DONE]" {
                p.done = true;
            }
            p.events.push(Event {
                name: name.take(),
                data: d,
            });
        }
        data.clear();
        *name = None;
    };
    for (n, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            flush(&mut name, &mut data, &mut p);
            continue;
        }
        if p.done {
            p.after_done = true;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "" => {} // comment
            "data" => data.push(value),
            "event" => name = Some(value.to_owned()),
            "id" | "retry" => {}
            _ => p.problems.push(format!(
                "line {} is not an SSE field (a data line split in two?): {:?}",
                n + 1,
                line.chars().take(60).collect::<String>()
            )),
        }
    }
    flush(&mut name, &mut data, &mut p);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_data_line_is_a_problem() {
        let p = parse(b"data: {\"a\":\n1}\n\ndata: [DONE]\n\n");
        assert_eq!(p.problems.len(), 1);
        assert!(p.done && !p.after_done);
    }

    #[test]
    fn bytes_after_done_are_noticed() {
        let p = parse(b"data: [DONE]\n\ndata: {}\n\n");
        assert!(p.after_done);
        let p = parse(b"event: x\ndata: {\"a\":1}\n\n: ping\n\ndata: [DONE]\n\n");
        assert!(p.problems.is_empty() && !p.after_done && p.events.len() == 2);
        assert_eq!(p.events[0].name.as_deref(), Some("x"));
    }
}
