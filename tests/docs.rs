//! The documentation against the binary: every flag `mcp-proxy --help`
//! lists is documented in the man page (in the OPTIONS group of the same
//! name) and in the README, and every flag they document is one the binary
//! accepts. Also: the man page's version is the crate's, its EXIT STATUS
//! section covers the statuses `--help` promises, and it lints clean with
//! `mandoc -Tlint` when mandoc is installed (`make lint-man` installs it).
//!
//! No threads; each check runs the real binary once per flag at most.

mod common;
use common::proxy_bin;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

const MAN: &str = include_str!("../man/mcp-proxy.1");
const README: &str = include_str!("../README.md");

/// Flags that the README and the man page show for other programs (curl,
/// cargo, apt-get, the servers put behind the proxy, ...). A flag here must
/// not be one `mcp-proxy --help` lists, or it would hide a typo.
#[rustfmt::skip]
const FOREIGN: &[&str] = &[
    "-s", "-o", "-D", "-d", "-f", "-N", "-i",           // curl
    "-n", "-c",                                         // sed, sh
    "--local-timezone",                                 // uvx mcp-server-time, in an example
    "--foo", "--flag",                                  // stand-ins for a server command's flags
    "--release", "--locked", "--target", "--bin", "--check", // cargo
    "--now", "-u",                                      // systemctl, journalctl
];

fn help() -> String {
    let out = Command::new(proxy_bin())
        .arg("--help")
        .env_remove("SSE_URL")
        .output()
        .expect("run mcp-proxy --help");
    assert!(out.status.success(), "--help exits 0");
    String::from_utf8(out.stdout).expect("--help is UTF-8")
}

fn is_flag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// Every `--long` and `-x` word in `text`: a flag starts a word (after a
/// space, a quote, a bracket or a comma, so `${A:-b}` holds none), and a
/// short flag is a single letter.
fn flags_in(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts_word =
            i == 0 || chars[i - 1].is_whitespace() || "([`\"',|".contains(chars[i - 1]);
        if chars[i] == '-' && starts_word {
            let mut j = i;
            while j < chars.len() && is_flag_char(chars[j]) {
                j += 1;
            }
            let word: String = chars[i..j].iter().collect();
            let long = word.starts_with("--")
                && word.len() > 2
                && word.as_bytes()[2].is_ascii_lowercase()
                && !word.ends_with('-');
            let short = word.len() == 2 && word.as_bytes()[1].is_ascii_alphabetic();
            if long || short {
                found.insert(word);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    found
}

/// Whether `flag` occurs in `text` as a whole word (so `--named-server`
/// is not found inside `--named-server-config`).
fn mentions(text: &str, flag: &str) -> bool {
    text.match_indices(flag).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + flag.len()..].chars().next();
        !before.is_some_and(is_flag_char) && !after.is_some_and(is_flag_char)
    })
}

/// The man page as text a reader sees: `\-` is a minus, font escapes gone.
fn man_text() -> String {
    let mut s = MAN.replace("\\-", "-");
    for esc in ["\\fB", "\\fI", "\\fR", "\\fP", "\\(aq", "\\e", "\\&", "\\%"] {
        s = s.replace(esc, "");
    }
    s.lines()
        .filter(|l| !l.starts_with(".\\\""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `--help`'s option lines, each flag mapped to the group header above it
/// ("Client mode options", "Limits", ...).
fn help_groups(help: &str) -> BTreeMap<String, String> {
    let mut groups = BTreeMap::new();
    let mut group = String::new();
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            group = line.trim_end_matches(':').to_owned();
            continue;
        }
        let t = line.trim_start();
        if !t.starts_with('-') {
            continue;
        }
        // The flag column ends where the description starts (two spaces).
        let spec = t.split("  ").next().expect("split yields one item");
        for flag in flags_in(spec) {
            groups.insert(flag, group.clone());
        }
    }
    groups
}

/// The man page's OPTIONS section: each flag in a `.TP` or `.TQ` tag mapped to the
/// `.SS` subsection it sits in.
fn man_groups() -> BTreeMap<String, String> {
    let text = man_text();
    let mut groups = BTreeMap::new();
    let mut in_options = false;
    let mut group = String::new();
    let mut tag_next = false;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix(".SH ") {
            in_options = h.trim() == "OPTIONS";
            continue;
        }
        if !in_options {
            continue;
        }
        if let Some(h) = line.strip_prefix(".SS ") {
            group = h.trim().trim_matches('"').to_owned();
        } else if line.starts_with(".TP") || line.starts_with(".TQ") {
            tag_next = true;
        } else if tag_next {
            tag_next = false;
            for flag in flags_in(line) {
                groups.insert(flag, group.clone());
            }
        }
    }
    groups
}

#[test]
fn every_help_flag_is_in_the_man_page_options_in_the_same_group() {
    let help = help_groups(&help());
    assert!(
        help.len() >= 25 && help.contains_key("--named-server-config") && help.contains_key("-H"),
        "parsed too few flags from --help: {help:?}"
    );
    let man = man_groups();
    let mut problems = Vec::new();
    for (flag, group) in &help {
        match man.get(flag) {
            None => problems.push(format!(
                "{flag} (--help group '{group}') has no entry in OPTIONS"
            )),
            Some(g) if g != group => problems.push(format!(
                "{flag} is under '{g}' in the man page, '{group}' in --help"
            )),
            Some(_) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "man/mcp-proxy.1:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_help_flag_is_in_the_readme() {
    let missing: Vec<String> = help_groups(&help())
        .into_keys()
        .filter(|f| !mentions(README, f))
        .collect();
    assert!(missing.is_empty(), "README.md does not mention {missing:?}");
}

/// Whether the binary takes `flag`: alone, without a value or a target, it
/// must give a usage error about the value or about having nothing to do
/// (or print help/version), never "unknown option".
fn accepted(flag: &str) -> Result<(), String> {
    let out = Command::new(proxy_bin())
        .arg(flag)
        .env_remove("SSE_URL")
        .env_remove("API_ACCESS_TOKEN")
        .output()
        .map_err(|e| format!("run mcp-proxy {flag}: {e}"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Ok(()),
        Some(2) if !err.contains("unknown option") && !err.contains("unexpected") => Ok(()),
        code => Err(format!("{flag}: status {code:?}: {}", err.trim())),
    }
}

#[test]
fn every_flag_the_docs_mention_is_accepted_by_the_binary() {
    let help_flags: BTreeSet<String> = help_groups(&help()).into_keys().collect();
    for f in FOREIGN {
        assert!(
            !help_flags.contains(*f),
            "{f} is an mcp-proxy flag; take it off the FOREIGN list"
        );
    }
    let mut problems = Vec::new();
    for (doc, text) in [
        ("man/mcp-proxy.1", man_text()),
        ("README.md", README.to_owned()),
    ] {
        for flag in flags_in(&text) {
            if FOREIGN.contains(&flag.as_str()) {
                continue;
            }
            if !help_flags.contains(&flag) {
                problems.push(format!("{doc}: {flag} is not in --help"));
            }
            if let Err(e) = accepted(&flag) {
                problems.push(format!("{doc}: {e}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_flag_scanner_finds_flags_and_only_flags() {
    let found = flags_in("-H, --headers KEY; x-y --named-server-config F ${A:-b} -- -e --2 a-b");
    let want: BTreeSet<String> = ["-H", "--headers", "--named-server-config", "-e"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(found, want);
    assert!(mentions("--named-server NAME", "--named-server"));
    assert!(!mentions("--named-server-config F", "--named-server"));
    assert!(!mentions("--no-debug", "--debug"));
}

#[test]
fn man_page_version_is_the_crate_version() {
    let th = MAN
        .lines()
        .find(|l| l.starts_with(".TH "))
        .expect("man page has a .TH line");
    let want = format!("\"mcp-proxy {}\"", env!("CARGO_PKG_VERSION"));
    assert!(th.contains(&want), "{th} should name {want}");
}

#[test]
fn man_page_has_every_section_and_exit_status() {
    let text = man_text();
    let sections: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix(".SH "))
        .map(|s| s.trim().trim_matches('"'))
        .collect();
    for want in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "MODES",
        "OPTIONS",
        "ENVIRONMENT",
        "FILES",
        "ENDPOINTS",
        "EXIT STATUS",
        "EXAMPLES",
        "SEE ALSO",
    ] {
        assert!(sections.contains(&want), "no .SH {want} in {sections:?}");
    }
    let exit = text
        .split(".SH EXIT STATUS")
        .nth(1)
        .and_then(|s| s.split("\n.SH ").next())
        .expect("EXIT STATUS section");
    for code in ["0", "1", "2"] {
        assert!(
            exit.lines().any(|l| l.trim() == format!(".B {code}")),
            "EXIT STATUS has no entry for {code}"
        );
    }
    for var in ["SSE_URL", "API_ACCESS_TOKEN", "RUST_LOG"] {
        assert!(help().contains(var), "--help names {var}");
        assert!(
            mentions(&text, var) && mentions(README, var),
            "{var} documented"
        );
    }
}

#[test]
fn man_page_lints_clean_with_mandoc() {
    let Some(mandoc) = ["/usr/bin/mandoc", "/usr/local/bin/mandoc"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("mandoc is not installed; skipping the lint (make lint-man installs it)");
        return;
    };
    let page = concat!(env!("CARGO_MANIFEST_DIR"), "/man/mcp-proxy.1");
    let out = Command::new(mandoc)
        .args(["-Tlint", page])
        .output()
        .expect("run mandoc");
    let msgs =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && msgs.trim().is_empty(),
        "mandoc -Tlint:\n{msgs}"
    );
}
