//! The structure `src/lib.rs` describes, checked on the source itself: one
//! import direction between layers, every SQL statement inside `src/db/`,
//! no source file over 400 lines. A module that is not in [`LAYERS`] fails
//! the test until it is given a layer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every top-level module of the crate and its layer (`src/lib.rs`'s table).
const LAYERS: &[(&str, u8)] = &[
    ("domain", 0),
    ("config", 1),
    ("telemetry", 1),
    ("observe", 1),
    ("faults", 1),
    ("timefmt", 1),
    ("retry", 1),
    ("webhooks", 1),
    ("target", 1),
    ("secretbox", 1),
    ("outbound", 1),
    ("db", 2),
    ("provider", 3),
    ("service", 4),
    ("queue", 5),
    ("http", 6),
    ("worker", 6),
    ("dispatcher", 6),
    ("scheduler", 6),
    ("app", 7),
    ("cli", 7),
    ("loadtest", 7),
    ("testing", 7),
];

/// The layer of the entry points, which never import each other.
const ENTRY_POINTS: u8 = 6;
/// Longest source file.
const MAX_LINES: usize = 400;

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The source with comments removed (doc links to higher layers are not
/// imports): a line is cut at the first `//` outside a string literal.
fn code(source: &str) -> String {
    let strip = |line: &str| -> String {
        let (mut quoted, mut escaped, mut prev) = (false, false, ' ');
        for (i, c) in line.char_indices() {
            match c {
                '\\' if quoted => escaped = !escaped,
                '"' if !escaped => quoted = !quoted,
                '/' if !quoted && prev == '/' => return line[..i - 1].to_owned(),
                _ => escaped = false,
            }
            if c != '\\' {
                escaped = false;
            }
            prev = c;
        }
        line.to_owned()
    };
    source.lines().map(strip).collect::<Vec<_>>().join("\n")
}

/// The top-level modules `code` refers to through `crate::…`, including
/// those of grouped imports (`use crate::{db, http};`).
fn referenced(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            out.push(name);
        }
    }
    out
}

/// The layering faults of one file of module `module`.
fn import_faults(module: &str, code: &str) -> Vec<String> {
    let Some(own) = layer(module) else { return vec![format!("module {module} has no layer in LAYERS")] };
    let mut faults = Vec::new();
    for target in referenced(code) {
        if target == module || target.chars().next().is_some_and(|c| c.is_uppercase()) {
            continue; // itself, or an item of the crate root
        }
        let Some(theirs) = layer(&target) else {
            if !["install_crypto"].contains(&target.as_str()) {
                faults.push(format!("imports {target}, which has no layer"));
            }
            continue;
        };
        if theirs > own {
            faults.push(format!("{module} (layer {own}) imports {target} (layer {theirs})"));
        } else if theirs == own && own == ENTRY_POINTS {
            faults.push(format!("entry point {module} imports entry point {target}"));
        }
        if module == "http" && target == "db" {
            faults.push("http imports db: the API goes through the service layer".to_owned());
        }
    }
    faults
}

/// True when `code` holds a SQL statement or runs one: a string literal
/// (plain or raw, its text starting on a later line or not) that opens with
/// a SQL keyword, or a call of sqlx's query functions.
fn holds_sql(code: &str) -> bool {
    const KEYWORDS: [&str; 7] = ["SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "DROP", "CREATE"];
    let runs = ["sqlx::query", "query_as(", "query_scalar(", "AssertSqlSafe"].iter().any(|p| code.contains(p));
    let statement = code.match_indices('"').any(|(i, _)| {
        let text = code[i + 1..].trim_start();
        KEYWORDS.iter().any(|k| text.strip_prefix(k).is_some_and(|rest| rest.starts_with(char::is_whitespace)))
    });
    runs || statement
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/db/x.rs` → `db`; `src/app.rs` → `app`; the crate root → `None`.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.trim_end_matches(".rs").to_owned();
    (!["lib", "main"].contains(&name.as_str())).then_some(name)
}

#[test]
fn layers_import_downward_sql_lives_in_db_and_files_stay_small() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut faults: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap();
        let name = file.strip_prefix(&src).unwrap().display().to_string();
        let mut found = Vec::new();
        if source.lines().count() > MAX_LINES {
            found.push(format!("{} lines (at most {MAX_LINES})", source.lines().count()));
        }
        if let Some(module) = module_of(&src, file) {
            let code = code(&source);
            found.extend(import_faults(&module, &code));
            if module != "db" && holds_sql(&code) {
                found.push("SQL outside src/db/".to_owned());
            }
        }
        if !found.is_empty() {
            faults.insert(name, found);
        }
    }
    assert!(faults.is_empty(), "the architecture does not hold: {faults:#?}");
}

#[test]
fn the_checks_catch_what_they_are_for() {
    // Each rule, shown failing on a line that breaks it.
    assert_eq!(import_faults("service", "use crate::http::AppState;").len(), 1);
    assert_eq!(import_faults("db", "use crate::{domain, service::ApiError};").len(), 1);
    assert_eq!(import_faults("worker", "crate::dispatcher::run(x)").len(), 1);
    assert_eq!(import_faults("http", "use crate::db::keys;").len(), 1);
    assert_eq!(import_faults("nowhere", "").len(), 1);
    assert!(import_faults("service", "use crate::db::payments;\nuse crate::{domain, provider};").is_empty());
    assert!(import_faults("app", "use crate::{http, worker};").is_empty());
    assert!(code("// see crate::http::router").trim().is_empty());
    assert!(holds_sql("sqlx::query(\"SELECT 1\")"));
    assert!(holds_sql("let q = \"UPDATE payments SET status = $1\";"));
    assert!(!holds_sql("// UPDATE the docs\nlet status = \"succeeded\";"));
    assert!(holds_sql("let q = r#\"\n    SELECT id FROM payments\"#;"));
    assert!(holds_sql("let q = \"\n    DELETE FROM outbox\";"));
    assert!(!holds_sql("let s = \"Selected\"; let t = \"WITHOUT\";"));
    // A URL in a string is no comment: what follows it is still read.
    assert_eq!(import_faults("db", &code("let u = \"http://x\"; use crate::http::AppState; // crate::app")).len(), 1);
    assert!(code("let u = \"a // b\"; // crate::http").contains("a // b"));
}
