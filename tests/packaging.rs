//! What ships with the binary: THIRD-PARTY-LICENSES covers every crate in
//! Cargo.lock (compiled in, with a licence and its texts, or listed as not
//! compiled in), so a new dependency cannot slip into a release without its
//! notice; `make install` and `make uninstall` put the notices beside the
//! man page and take them away again; `make dist` packs them.
//!
//! No network: Cargo.lock and the notices are read from the repository, and
//! `make install` copies the test build into a temporary DESTDIR. No threads.

mod common;
use common::proxy_bin;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const NOTICES: &str = "THIRD-PARTY-LICENSES";
const CRATES_HEADING: &str = "Crates";
const NOT_COMPILED_HEADING: &str = "Crates in Cargo.lock not compiled into the binary";
const TEXTS_HEADING: &str = "Licence texts";

fn read(name: &str) -> String {
    let path = Path::new(ROOT).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "read {}: {e}; run .ci/third-party-licenses to write it",
            path.display()
        )
    })
}

/// (name, version) of every package in Cargo.lock.
fn lock_packages() -> BTreeSet<(String, String)> {
    let lock = read("Cargo.lock");
    let mut out = BTreeSet::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_owned());
        } else if let Some(v) = line.strip_prefix("version = ") {
            if let Some(n) = name.take() {
                out.insert((n, v.trim_matches('"').to_owned()));
            }
        }
    }
    assert!(out.len() > 20, "parsed too few packages from Cargo.lock");
    out
}

/// The notices file cut at its headings (a line followed by `---` or `===`).
fn sections(text: &str) -> BTreeMap<String, Vec<String>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    let mut i = 0;
    while i < lines.len() {
        let underline = lines.get(i + 1).is_some_and(|u| {
            !u.is_empty() && (u.chars().all(|c| c == '-') || u.chars().all(|c| c == '='))
        });
        // The texts come last, and their own underlined lines are theirs.
        if underline && current != TEXTS_HEADING {
            current = lines[i].to_owned();
            i += 2;
            continue;
        }
        out.entry(current.clone())
            .or_default()
            .push(lines[i].to_owned());
        i += 1;
    }
    out
}

/// `name version` entries: the lines of a section that start in column 0
/// with two words, the second a version.
fn entries(lines: &[String]) -> BTreeMap<(String, String), Vec<String>> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for l in lines {
        if l.starts_with(' ') {
            if let Some(k) = &current {
                out.entry(k.clone())
                    .or_insert_with(Vec::new)
                    .push(l.clone());
            }
            continue;
        }
        let mut words = l.split_whitespace();
        current = match (words.next(), words.next()) {
            (Some(n), Some(v)) if v.starts_with(|c: char| c.is_ascii_digit()) => {
                Some((n.to_owned(), v.to_owned()))
            }
            _ => None,
        };
        if let Some(k) = &current {
            out.entry(k.clone()).or_insert_with(Vec::new);
        }
    }
    out
}

#[test]
fn the_notices_cover_every_crate_in_cargo_lock() {
    let text = read(NOTICES);
    let sec = sections(&text);
    let compiled = entries(sec.get(CRATES_HEADING).expect("a Crates section"));
    let not_compiled = entries(
        sec.get(NOT_COMPILED_HEADING)
            .expect("a section for crates not compiled in"),
    );
    let texts = sec.get(TEXTS_HEADING).expect("a Licence texts section");
    let lock = lock_packages();
    let mut problems = Vec::new();
    for (name, version) in &lock {
        if name == "mcp-proxy" {
            continue;
        }
        let k = (name.clone(), version.clone());
        match (compiled.contains_key(&k), not_compiled.contains_key(&k)) {
            (false, false) => problems.push(format!("{name} {version} is in neither list")),
            (true, true) => problems.push(format!("{name} {version} is in both lists")),
            _ => {}
        }
    }
    for k in compiled.keys().chain(not_compiled.keys()) {
        if !lock.contains(k) {
            problems.push(format!("{} {} is not in Cargo.lock", k.0, k.1));
        }
    }
    // Every compiled crate has its licence and at least one text, and every
    // text it points at is there.
    for ((name, version), body) in &compiled {
        if !body.iter().any(|l| l.trim_start().starts_with("License: ")) {
            problems.push(format!("{name} {version} has no License: line"));
        }
        let refs: Vec<&str> = body
            .iter()
            .filter_map(|l| l.split_once(": text [").map(|(_, r)| r))
            .filter_map(|r| r.strip_suffix(']'))
            .collect();
        if refs.is_empty() {
            problems.push(format!("{name} {version} points at no licence text"));
        }
        for r in refs {
            if !texts.iter().any(|l| l.starts_with(&format!("[{r}] "))) {
                problems.push(format!("{name} {version} points at a missing text [{r}]"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{NOTICES} is out of date with Cargo.lock; run .ci/third-party-licenses:\n{}",
        problems.join("\n")
    );
}

/// The crates we depend on by name are compiled in, so listed with their
/// licences: the generator cannot have put them in the wrong list.
#[test]
fn our_dependencies_and_the_tls_stack_are_among_the_compiled_crates() {
    let text = read(NOTICES);
    let compiled: BTreeSet<String> = entries(
        sections(&text)
            .get(CRATES_HEADING)
            .expect("a Crates section"),
    )
    .into_keys()
    .map(|(name, _)| name)
    .collect();
    let manifest = read("Cargo.toml");
    let deps = manifest
        .split("\n[dependencies]\n")
        .nth(1)
        .expect("Cargo.toml has [dependencies]");
    let deps = deps.split("\n[").next().expect("split yields one item");
    let mut want: Vec<String> = deps
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .filter(|k| !k.is_empty() && !k.starts_with('#'))
        .collect();
    assert!(want.len() >= 5, "parsed too few dependencies: {want:?}");
    want.extend(["rustls", "ring", "webpki-roots", "rustls-webpki"].map(String::from));
    let missing: Vec<&String> = want.iter().filter(|d| !compiled.contains(*d)).collect();
    assert!(
        missing.is_empty(),
        "not among the compiled crates: {missing:?}"
    );
    // The vendored tiny_http is ours to carry: its notice too.
    let tiny = text
        .lines()
        .find(|l| l.starts_with("tiny_http "))
        .expect("tiny_http listed");
    assert!(tiny.contains("vendor/tiny_http"), "{tiny}");
    for needle in [
        "Copyright (c) 2014-2019 The tiny-http contributors",
        "Copyright (c) 2005-2020 Rich Felker",
    ] {
        assert!(text.contains(needle), "{NOTICES} lacks {needle:?}");
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read a directory we made") {
            let p = e.expect("a directory entry").path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn make(target: &str, destdir: &Path) {
    let out = Command::new("make")
        .current_dir(ROOT)
        .args(["-s", target, "PREFIX=/usr"])
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg(format!("BIN={}", proxy_bin()))
        .output()
        .expect("run make");
    assert!(
        out.status.success(),
        "make {target}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn install_puts_the_licences_beside_the_man_page_and_uninstall_removes_them() {
    let dir =
        TempDir(std::env::temp_dir().join(format!("mcp-proxy-install-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("create a temporary DESTDIR");
    make("install", &dir.0);
    assert_eq!(
        files_under(&dir.0),
        [
            "usr/bin/mcp-proxy",
            "usr/share/doc/mcp-proxy/LICENSE",
            "usr/share/doc/mcp-proxy/THIRD-PARTY-LICENSES",
            "usr/share/man/man1/mcp-proxy.1",
        ]
    );
    let installed =
        std::fs::read_to_string(dir.0.join("usr/share/doc/mcp-proxy/THIRD-PARTY-LICENSES"))
            .expect("read the installed notices");
    assert_eq!(installed, read(NOTICES));
    make("uninstall", &dir.0);
    assert_eq!(files_under(&dir.0), Vec::<String>::new());
    assert!(
        !dir.0.join("usr/share/doc/mcp-proxy").exists(),
        "uninstall leaves no empty doc directory"
    );
}

/// `make dist` needs the static build, too slow for the suite; its recipe
/// must at least pack the notices.
#[test]
fn dist_packs_the_licences() {
    let makefile = read("Makefile");
    let recipe: Vec<&str> = makefile
        .split("\ndist:")
        .nth(1)
        .expect("a dist target")
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with('\t'))
        .collect();
    for file in ["LICENSE", NOTICES] {
        assert!(
            recipe.iter().any(|l| l.contains(&format!(" {file} dist/"))),
            "make dist does not pack {file}: {recipe:#?}"
        );
    }
}
