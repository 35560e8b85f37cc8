//! What the config takes from the environment: `${VAR}` expansion, and the providers
//! detected from well-known API-key variables when the file names none.

use super::{line_of, ProviderKind};

/// Providers detected from the environment when no config names any: (env var, name, kind,
/// base URL).
pub(super) const ENV_PROVIDERS: &[(&str, &str, ProviderKind, &str)] = &[
    (
        "OPENAI_API_KEY",
        "openai",
        ProviderKind::Openai,
        "https://api.openai.com/v1",
    ),
    (
        "ANTHROPIC_API_KEY",
        "anthropic",
        ProviderKind::Anthropic,
        "https://api.anthropic.com",
    ),
    (
        "GEMINI_API_KEY",
        "gemini",
        ProviderKind::Gemini,
        "https://generativelanguage.googleapis.com/v1beta",
    ),
    (
        "TOGETHER_API_KEY",
        "together",
        ProviderKind::OpenaiCompatible,
        "https://api.together.xyz/v1",
    ),
    (
        "FIREWORKS_API_KEY",
        "fireworks",
        ProviderKind::OpenaiCompatible,
        "https://api.fireworks.ai/inference/v1",
    ),
    (
        "GROQ_API_KEY",
        "groq",
        ProviderKind::OpenaiCompatible,
        "https://api.groq.com/openai/v1",
    ),
    (
        "DEEPSEEK_API_KEY",
        "deepseek",
        ProviderKind::OpenaiCompatible,
        "https://api.deepseek.com/v1",
    ),
    (
        "MISTRAL_API_KEY",
        "mistral",
        ProviderKind::OpenaiCompatible,
        "https://api.mistral.ai/v1",
    ),
    (
        "OPENROUTER_API_KEY",
        "openrouter",
        ProviderKind::OpenaiCompatible,
        "https://openrouter.ai/api/v1",
    ),
];

/// Expands `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`.
pub(super) fn expand_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    used: &mut Vec<String>,
) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let line = line_of(text, text.len() - rest.len() + i);
        let Some(end) = body.find('}') else {
            return Err((
                line,
                "unclosed `${` in the config: write `${VAR}` or `${VAR:-default}`".to_owned(),
            ));
        };
        let spec = &body[..end];
        let (name, default) = match spec.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (spec, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err((
                line,
                format!("`${{{spec}}}` is not a variable name: expected letters, digits and `_`"),
            ));
        }
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => {
                out.push_str(&v);
                used.push(v);
            }
            (None, Some(d)) => out.push_str(d),
            (None, None) => {}
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
