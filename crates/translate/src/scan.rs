//! Byte-level peeks into JSON text, used to let untouched events skip a full parse.

/// Whether every occurrence of the object key `key` (given with its quotes, e.g.
/// `"usage"`) in `json` has the value `null`; true when the key does not occur.
///
/// A quoted key cannot occur inside a JSON string value (its quotes would be escaped), so
/// a match is a real key. A nested key of the same name also counts, which only costs the
/// caller a slow path, never a wrong answer.
pub fn key_is_null_or_absent(json: &[u8], key: &[u8]) -> bool {
    let finder = memchr_find_iter(json, key);
    for at in finder {
        let mut rest = &json[at + key.len()..];
        rest = trim_start(rest);
        let Some(after_colon) = rest.strip_prefix(b":") else {
            continue;
        };
        if !trim_start(after_colon).starts_with(b"null") {
            return false;
        }
    }
    true
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr_find_iter(hay, needle).next().is_some()
}

fn trim_start(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\n' | b'\r', rest @ ..] = s {
        s = rest;
    }
    s
}

fn memchr_find_iter<'a>(hay: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    memchr::memmem::find_iter(hay, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_absent_and_present() {
        assert!(key_is_null_or_absent(br#"{"a":1}"#, b"\"usage\""));
        assert!(key_is_null_or_absent(br#"{"usage" :  null}"#, b"\"usage\""));
        assert!(!key_is_null_or_absent(
            br#"{"usage":{"prompt_tokens":1}}"#,
            b"\"usage\""
        ));
        assert!(!key_is_null_or_absent(
            br#"{"x":{"usage":null},"usage":{}}"#,
            b"\"usage\""
        ));
        // Inside a string the quotes are escaped, so this is no key.
        assert!(key_is_null_or_absent(
            br#"{"content":"the \"usage\": 5"}"#,
            b"\"usage\""
        ));
        assert!(contains(b"abc\"tool_calls\"", b"\"tool_calls\""));
    }
}
