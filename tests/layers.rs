//! The crate's layers import only downward (ARCHITECTURE.md): each file of `src/` is
//! read as text, and every `crate::` path in its code (not its comments, not its unit
//! tests) must name a module its layer may import.

use std::path::{Path, PathBuf};

/// The layers, lowest first, and the top-level modules of each.
const LAYERS: [(&str, &[&str]); 8] = [
    (
        "ground",
        &["sys", "error", "range", "clock", "stats", "failpoint"],
    ),
    ("origin", &["origin", "storage"]),
    ("tier", &["tier"]),
    ("store", &["store"]),
    ("engine", &["engine"]),
    ("facade", &["cache", "builder", "maintenance"]),
    ("kv", &["kv"]),
    ("server", &["server"]),
];

/// What each layer may import besides itself.
fn allowed(layer: &str) -> &'static [&'static str] {
    match layer {
        "ground" => &[],
        "origin" => &["ground"],
        "tier" => &["ground", "origin"],
        "store" => &["ground"],
        "engine" => &["ground", "origin", "store"],
        "facade" => &["ground", "origin", "tier", "store", "engine"],
        "kv" => &["ground", "origin", "store", "facade"],
        "server" => &["ground", "origin", "facade"],
        other => panic!("no layer {other}"),
    }
}

fn layer_of(module: &str) -> Option<&'static str> {
    LAYERS
        .iter()
        .find(|(_, modules)| modules.contains(&module))
        .map(|(layer, _)| *layer)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().unwrap() != "bin" {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file: without its trailing unit-test module and its comment lines.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules named by `crate::` paths in `code`, with `use crate::{a, b}`
/// trees opened.
fn imported(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(tree) = rest.strip_prefix('{') {
            let tree = &tree[..tree.find('}').unwrap_or(tree.len())];
            for item in tree.split(',') {
                names.push(item.trim().split("::").next().unwrap_or("").to_owned());
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.push(rest[..end].to_owned());
        }
    }
    names.retain(|name| !name.is_empty());
    names
}

#[test]
fn every_layer_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = top.trim_end_matches(".rs");
        if top == "lib" {
            continue;
        }
        let layer = layer_of(top).unwrap_or_else(|| panic!("{top} is in no layer"));
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for module in imported(&code) {
            // `crate::Name` is a re-export of lib.rs: a public type, not a layer.
            if module.starts_with(char::is_uppercase) || module == "failpoint" {
                continue;
            }
            let target = layer_of(&module)
                .unwrap_or_else(|| panic!("{}: crate::{module} is in no layer", file.display()));
            if target != layer && !allowed(layer).contains(&target) {
                wrong.push(format!(
                    "{} ({layer}) imports crate::{module} ({target})",
                    relative.display()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_an_upward_import() {
    let code = code_of("use crate::store::names::TMP_SUFFIX;\n// crate::kv in a comment\n");
    assert_eq!(imported(&code), ["store"]);
    assert_eq!(
        imported("use crate::{cache::Cache, engine::Reader};"),
        ["cache", "engine"]
    );
    assert!(!allowed("store").contains(&layer_of("kv").unwrap()));
}
