//! URLs safe to show (logs, `config check`, errors).

/// `url` safe to show: its userinfo (`user:pass@`, or a bare token `tok@`) and the values
/// of query parameters whose names look secret (`key`, `token`, `secret`, `password`,
/// `sig`, `auth`, `credential`, …) become `****`.
pub fn redact(url: &str) -> String {
    let (scheme_end, rest_start) = match url.find("://") {
        Some(s) => (s + 3, s + 3),
        None => (0, 0),
    };
    let authority_end = url[rest_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| rest_start + i);
    let mut out = match url[rest_start..authority_end].rfind('@') {
        Some(at) => {
            let creds = &url[rest_start..rest_start + at];
            let shown = match creds.split_once(':') {
                Some((user, _)) => format!("{user}:****"),
                _ => "****".to_owned(),
            };
            format!("{}{shown}{}", &url[..scheme_end], &url[rest_start + at..])
        }
        None => url.to_owned(),
    };
    if let Some(q) = out.find('?') {
        let (base, query) = out.split_at(q + 1);
        let (query, fragment) = match query.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (query, None),
        };
        let secret = |k: &str| {
            let k = k.to_ascii_lowercase();
            [
                "key",
                "token",
                "secret",
                "pass",
                "pwd",
                "sig",
                "auth",
                "credential",
                "session",
            ]
            .iter()
            .any(|w| k.contains(w))
        };
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if secret(k) => format!("{k}=****"),
                _ => kv.to_owned(),
            })
            .collect();
        let fragment = fragment.map_or_else(String::new, |f| format!("#{f}"));
        out = format!("{base}{}{fragment}", query.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn userinfo_and_secret_query_values_are_hidden() {
        assert_eq!(
            redact("postgres://jinf:hunter2@db:5432/x?sslmode=require&password=p"),
            "postgres://jinf:****@db:5432/x?sslmode=require&password=****"
        );
        assert_eq!(
            redact("https://sk-abc@api.example.com/v1"),
            "https://****@api.example.com/v1"
        );
        assert_eq!(
            redact("https://x.openai.azure.com/openai?api-key=s3cr3t&api-version=2024-10-21"),
            "https://x.openai.azure.com/openai?api-key=****&api-version=2024-10-21"
        );
        assert_eq!(
            redact("https://h/v1?sig=abc&access_token=t#frag"),
            "https://h/v1?sig=****&access_token=****#frag"
        );
        // An @ in the path is not userinfo.
        assert_eq!(redact("https://h/v1/@models"), "https://h/v1/@models");
        assert_eq!(redact("sqlite://./jusinfer.db"), "sqlite://./jusinfer.db");
    }
}
