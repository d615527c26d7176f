//! Which servers to run in server mode: the default server from the command
//! line, `--named-server NAME 'COMMAND STRING'`, and the `mcpServers` JSON
//! file of `--named-server-config` (the format desktop clients use).
//!
//! Precedence is upstream's (UPSTREAM.md §2.4): the config file is the only
//! source of named servers when given, and `--named-server` is then ignored
//! with a warning. Beyond upstream: `disabled` works, `cwd` per server,
//! `${VAR}` and `${VAR:-default}` expansion in `command`, `args`, `env` and
//! `cwd`, and every mistake is one error naming the file, the server and the
//! field, reported before anything starts.

use crate::child::{child_env, ChildSpec};
use crate::cli::Args;
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The name of the server given as `command_or_url`, served at the root.
pub const DEFAULT_SERVER: &str = "default";

/// One server to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerDef {
    pub name: String,
    /// Path prefix of its endpoints: `""` for the default server,
    /// `/servers/NAME` for named ones.
    pub prefix: String,
    pub spec: ChildSpec,
    /// False for `"enabled": false` or `"disabled": true`: listed in /status
    /// as disabled, never started.
    pub enabled: bool,
    /// The config file's `timeout` (seconds), used as this server's
    /// initialize timeout.
    pub timeout: Option<Duration>,
}

/// A configuration mistake. Shown as one line; exit status 2.
#[derive(Debug, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::cli::one_line(&self.0))
    }
}

/// The servers the command line asks for, in order: the default server
/// first, then named ones. Warnings (ignored flags, unknown fields) are
/// logged.
pub fn servers(
    args: &Args,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ServerDef>, ConfigError> {
    let mut out = Vec::new();
    if let Some(cmd) = args.target.as_ref().filter(|_| args.client_url().is_none()) {
        out.push(ServerDef {
            name: DEFAULT_SERVER.into(),
            prefix: String::new(),
            spec: ChildSpec {
                name: DEFAULT_SERVER.into(),
                program: cmd.clone(),
                args: args.child_args.clone(),
                env: child_env(args.pass_environment, &args.env),
                cwd: args.cwd.clone(),
            },
            enabled: true,
            timeout: None,
        });
    }
    if let Some(path) = &args.named_server_config {
        if !args.named_servers.is_empty() {
            log::warn!(
                "--named-server is ignored because --named-server-config {} is given",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        let (defs, warnings) = parse_file(path, &text, args.pass_environment, getenv)?;
        for w in warnings {
            log::warn!("{w}");
        }
        out.extend(defs);
    } else {
        for (name, command) in &args.named_servers {
            check_name(name).map_err(|e| ConfigError(format!("--named-server '{name}': {e}")))?;
            let words = split_words(command)
                .map_err(|e| ConfigError(format!("--named-server '{name}': {e}")))?;
            let Some((program, rest)) = words.split_first() else {
                return Err(ConfigError(format!(
                    "--named-server '{name}': the command is empty"
                )));
            };
            out.push(ServerDef {
                name: name.clone(),
                prefix: format!("/servers/{name}"),
                spec: ChildSpec {
                    name: name.clone(),
                    program: program.clone(),
                    args: rest.to_vec(),
                    env: child_env(args.pass_environment, &[]),
                    cwd: None,
                },
                enabled: true,
                timeout: None,
            });
        }
    }
    let mut seen = std::collections::HashSet::new();
    for d in &out {
        if !seen.insert(d.name.as_str()) {
            return Err(ConfigError(format!(
                "server name '{}' is used twice; each server needs its own name",
                d.name
            )));
        }
    }
    if out.is_empty() {
        return Err(ConfigError(
            "no servers to run: every server in the config is disabled and no default server was given".into(),
        ));
    }
    Ok(out)
}

/// Names become URL path segments: `/servers/NAME/mcp`.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err("a server name must not be empty, '.' or '..'".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~')))
    {
        return Err(format!(
            "the server name contains {c:?}; use only letters, digits, '-', '_', '.' and '~' so it fits in a URL"
        ));
    }
    Ok(())
}

/// Parses an `mcpServers` file. Returns the servers in file order and the
/// warnings to log.
pub fn parse_file(
    path: &Path,
    text: &str,
    pass_environment: bool,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<ServerDef>, Vec<String>), ConfigError> {
    let file = path.display();
    let err = |msg: String| ConfigError(format!("{file}: {msg}"));
    let root: Value =
        serde_json::from_str(text).map_err(|e| err(format!("not valid JSON: {e}")))?;
    let servers = match root.get("mcpServers") {
        Some(Value::Object(m)) => m,
        Some(_) => return Err(err("\"mcpServers\" must be an object of servers".into())),
        None => return Err(err("missing the \"mcpServers\" object".into())),
    };
    // serde_json keeps keys sorted and the last of duplicates; the file's own
    // order and duplicate names come from the text.
    let names = crate::jsonrpc::object_keys(text, &["mcpServers"]).unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    for n in &names {
        if !seen.insert(n.as_str()) {
            return Err(err(format!("server '{n}' is defined twice")));
        }
    }
    let mut defs = Vec::new();
    let mut warnings = Vec::new();
    for name in &names {
        let entry = &servers[name.as_str()];
        let at = |field: &str, msg: &str| err(format!("server '{name}', field \"{field}\": {msg}"));
        check_name(name).map_err(|e| err(format!("server '{name}': {e}")))?;
        let Value::Object(e) = entry else {
            return Err(err(format!("server '{name}' must be an object")));
        };
        for k in e.keys() {
            if !KNOWN_FIELDS.contains(&k.as_str()) {
                warnings.push(format!(
                    "{file}: server '{name}': unknown field \"{k}\" ignored"
                ));
            }
        }
        let expand_at = |field: &str, s: &str| expand(s, getenv).map_err(|m| at(field, &m));
        let enabled = match (e.get("enabled"), e.get("disabled")) {
            (Some(v), _) if !v.is_boolean() => return Err(at("enabled", "must be true or false")),
            (_, Some(v)) if !v.is_boolean() => return Err(at("disabled", "must be true or false")),
            (en, dis) => {
                en.and_then(Value::as_bool).unwrap_or(true)
                    && !dis.and_then(Value::as_bool).unwrap_or(false)
            }
        };
        let command = match e.get("command") {
            Some(Value::String(s)) if !s.trim().is_empty() => expand_at("command", s)?,
            Some(Value::String(_)) => return Err(at("command", "is empty")),
            Some(_) => return Err(at("command", "must be a string")),
            None if e.contains_key("url") => {
                return Err(at(
                    "command",
                    "is missing: remote (\"url\") servers are not supported here, only stdio servers; set \"enabled\": false to keep the entry",
                ))
            }
            None => return Err(at("command", "is missing")),
        };
        let args = match e.get("args") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => expand_at("args", s),
                    _ => Err(at("args", "must be a list of strings")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(at("args", "must be a list of strings")),
        };
        let env = match e.get("env") {
            None => Vec::new(),
            Some(Value::Object(m)) => env_pairs(m, &|k, s| expand_at(&format!("env.{k}"), s), &at)?,
            Some(_) => return Err(at("env", "must be an object of strings")),
        };
        let cwd = match e.get("cwd") {
            None => None,
            Some(Value::String(s)) => Some(PathBuf::from(expand_at("cwd", s)?)),
            Some(_) => return Err(at("cwd", "must be a string")),
        };
        let timeout = match e.get("timeout") {
            None => None,
            Some(v) => match v.as_f64() {
                Some(s) if s > 0.0 && s.is_finite() => Some(Duration::from_secs_f64(s)),
                _ => return Err(at("timeout", "must be a positive number of seconds")),
            },
        };
        match e.get("transportType") {
            None => {}
            Some(Value::String(t)) if t == "stdio" => {}
            Some(Value::String(t)) => {
                return Err(at(
                    "transportType",
                    &format!("'{t}' is not supported; only \"stdio\" servers can be run"),
                ))
            }
            Some(_) => return Err(at("transportType", "must be a string")),
        }
        defs.push(ServerDef {
            name: name.clone(),
            prefix: format!("/servers/{name}"),
            spec: ChildSpec {
                name: name.clone(),
                program: command,
                args,
                env: child_env(pass_environment, &env),
                cwd,
            },
            enabled,
            timeout,
        });
    }
    Ok((defs, warnings))
}

const KNOWN_FIELDS: &[&str] = &[
    "command",
    "args",
    "env",
    "enabled",
    "disabled",
    "cwd",
    "timeout",
    "transportType",
    "url",
];

type FieldErr<'a> = dyn Fn(&str, &str) -> ConfigError + 'a;

fn env_pairs(
    m: &Map<String, Value>,
    expand: &dyn Fn(&str, &str) -> Result<String, ConfigError>,
    at: &FieldErr,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (k, v) in m {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(at("env", &format!("'{k}' is not a valid variable name")));
        }
        let v = match v {
            Value::String(s) => expand(k, s)?,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(at(&format!("env.{k}"), "must be a string")),
        };
        out.push((k.clone(), v));
    }
    Ok(out)
}

/// Expands `${VAR}` and `${VAR:-default}` (default used when VAR is unset or
/// empty, as in the shell). `$$` is a literal `$`; a `$` not followed by `{`
/// is kept as is.
pub fn expand(s: &str, getenv: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed '${{' in '{s}'"))?;
            let inner = &body[..end];
            let (var, default) = match inner.split_once(":-") {
                Some((v, d)) => (v, Some(d)),
                None => (inner, None),
            };
            if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("'${{{inner}}}' is not a variable reference"));
            }
            match (getenv(var).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!("environment variable {var} is not set (write ${{{var}:-default}} for a fallback)"))
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits a command string into words as a POSIX shell would, without
/// running one: blanks separate words, '…' is literal, "…" allows \" \\ \$
/// \` escapes, a backslash outside quotes escapes the next character.
/// No expansion of variables, globs or anything else.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated single quote in '{s}'")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(format!("unterminated double quote in '{s}'")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated double quote in '{s}'")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    cur.push(c);
                }
                None => return Err(format!("a trailing backslash in '{s}' escapes nothing")),
            },
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOME" => Some("/home/u".into()),
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn splits_like_a_shell() {
        let cases: &[(&str, &[&str])] = &[
            ("uvx mcp-server-fetch", &["uvx", "mcp-server-fetch"]),
            ("  a   b\tc ", &["a", "b", "c"]),
            ("sh -c 'echo hi; exit 1'", &["sh", "-c", "echo hi; exit 1"]),
            (r#"a "b c" d"#, &["a", "b c", "d"]),
            (r#""a\"b" 'x\y'"#, &[r#"a"b"#, r"x\y"]),
            (r"a\ b c", &["a b", "c"]),
            ("''", &[""]),
            (r#"x"y"'z'"#, &["xyz"]),
            ("", &[]),
            ("$HOME", &["$HOME"]),
        ];
        for (input, want) in cases {
            assert_eq!(split_words(input).unwrap(), *want, "input {input:?}");
        }
        for bad in ["'open", "\"open", "end\\"] {
            assert!(split_words(bad).is_err(), "{bad:?} must fail");
        }
    }

    #[test]
    fn expands_variables() {
        let ok: &[(&str, &str)] = &[
            ("${HOME}/x", "/home/u/x"),
            ("${NOPE:-fallback}", "fallback"),
            ("${EMPTY:-dflt}", "dflt"),
            ("Bearer ${TOKEN}", "Bearer s3cret"),
            ("$$literal", "$literal"),
            ("cost $5", "cost $5"),
            ("${NOPE:-}", ""),
        ];
        for (input, want) in ok {
            assert_eq!(expand(input, &env).unwrap(), *want, "input {input:?}");
        }
        assert!(expand("${NOPE}", &env).unwrap_err().contains("NOPE"));
        assert!(expand("${HOME", &env).is_err());
        assert!(expand("${a b}", &env).is_err());
    }

    fn parse(text: &str) -> Result<Vec<ServerDef>, String> {
        parse_file(Path::new("servers.json"), text, false, &env)
            .map(|(d, _)| d)
            .map_err(|e| e.0)
    }

    #[test]
    fn parses_a_full_entry() {
        let d = parse(
            r#"{"mcpServers": {
                "zeta": {"command": "z"},
                "fetch": {"command": "uvx", "args": ["mcp-server-fetch", "${HOME}/a"], "env": {"K": "${TOKEN}", "N": 5},
                          "cwd": "${HOME}", "timeout": 30, "transportType": "stdio", "enabled": true},
                "off": {"command": "x", "disabled": true},
                "off2": {"command": "x", "enabled": false}
            }}"#,
        )
        .unwrap();
        let names: Vec<_> = d.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["zeta", "fetch", "off", "off2"], "file order kept");
        let f = &d[1];
        assert_eq!(f.prefix, "/servers/fetch");
        assert_eq!(f.spec.program, "uvx");
        assert_eq!(f.spec.args, ["mcp-server-fetch", "/home/u/a"]);
        assert!(f.spec.env.contains(&("K".into(), "s3cret".into())));
        assert!(f.spec.env.contains(&("N".into(), "5".into())));
        assert_eq!(f.spec.cwd, Some(PathBuf::from("/home/u")));
        assert_eq!(f.timeout, Some(Duration::from_secs(30)));
        assert!(f.enabled && !d[2].enabled && !d[3].enabled);
    }

    #[test]
    fn every_mistake_names_file_server_and_field() {
        let cases: &[(&str, &[&str])] = &[
            ("", &["servers.json", "not valid JSON"]),
            ("{", &["servers.json", "not valid JSON"]),
            ("[]", &["mcpServers"]),
            ("{}", &["mcpServers"]),
            (r#"{"mcpServers": []}"#, &["mcpServers", "object"]),
            (r#"{"mcpServers": {"a": 1}}"#, &["'a'", "object"]),
            (
                r#"{"mcpServers": {"a": {}}}"#,
                &["'a'", "command", "missing"],
            ),
            (
                r#"{"mcpServers": {"a": {"command": ""}}}"#,
                &["'a'", "command", "empty"],
            ),
            (
                r#"{"mcpServers": {"a": {"command": 5}}}"#,
                &["'a'", "command", "string"],
            ),
            (
                r#"{"mcpServers": {"a": {"url": "http://x"}}}"#,
                &["'a'", "remote"],
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "args": "y"}}}"#,
                &["'a'", "args"],
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "args": [1]}}}"#,
                &["'a'", "args"],
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "env": []}}}"#,
                &["'a'", "env"],
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "env": {"K": []}}}}"#,
                &["'a'", "env.K"],
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "enabled": "yes"}}}"#,
                &["'a'", "enabled"],
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "disabled": 1}}}"#,
                &["'a'", "disabled"],
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "cwd": 1}}}"#,
                &["'a'", "cwd"],
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "timeout": -1}}}"#,
                &["'a'", "timeout"],
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "transportType": "sse"}}}"#,
                &["'a'", "transportType"],
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "args": ["${NOPE}"]}}}"#,
                &["'a'", "args", "NOPE"],
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "env": {"K": "${NOPE}"}}}}"#,
                &["'a'", "env.K", "NOPE"],
            ),
            (
                r#"{"mcpServers": {"a b": {"command": "x"}}}"#,
                &["'a b'", "URL"],
            ),
            (r#"{"mcpServers": {"..": {"command": "x"}}}"#, &["'..'"]),
            (
                r#"{"mcpServers": {"a": {"command": "x"}, "a": {"command": "y"}}}"#,
                &["'a'", "twice"],
            ),
        ];
        for (text, needles) in cases {
            let e = parse(text).expect_err(text);
            assert!(e.starts_with("servers.json: "), "{text}: {e}");
            for n in *needles {
                assert!(e.contains(n), "{text}: {e} should mention {n}");
            }
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn unknown_fields_are_warnings() {
        let (d, w) = parse_file(
            Path::new("c.json"),
            r#"{"mcpServers": {"a": {"command": "x", "autoApprove": []}}}"#,
            false,
            &env,
        )
        .unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("autoApprove"), "{w:?}");
    }

    fn args(argv: &[&str]) -> Args {
        match crate::cli::parse(argv.iter().copied(), &|_| None).unwrap() {
            crate::cli::Command::Run(a) => *a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn command_line_servers() {
        let a = args(&[
            "-e",
            "K",
            "V",
            "--named-server",
            "t",
            "sh -c 'exit 0'",
            "--",
            "srv",
            "--x",
        ]);
        let d = servers(&a, &env).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].name.as_str(), d[0].prefix.as_str()), ("default", ""));
        assert_eq!(d[0].spec.args, ["--x"]);
        assert!(d[0].spec.env.contains(&("K".into(), "V".into())));
        assert_eq!(d[1].spec.program, "sh");
        assert_eq!(d[1].spec.args, ["-c", "exit 0"]);
        assert!(
            !d[1].spec.env.iter().any(|(k, _)| k == "K"),
            "-e is for the default server only"
        );
        let e = servers(&args(&["--named-server", "a/b", "x"]), &env).unwrap_err();
        assert!(e.0.contains("a/b"), "{e}");
        let e = servers(&args(&["--named-server", "x", "  "]), &env).unwrap_err();
        assert!(e.0.contains("empty"), "{e}");
        let e = servers(&args(&["--named-server", "default", "x", "srv"]), &env).unwrap_err();
        assert!(e.0.contains("twice"), "{e}");
    }
}
