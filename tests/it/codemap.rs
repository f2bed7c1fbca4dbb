//! The map is true: every source file is named in docs/ARCHITECTURE.md's codemap, and
//! the layering rules it states hold in the imports.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files_under(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

fn rust_files(dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    files_under(&root().join(dir), "rs", &mut out);
    out.sort();
    out
}

#[test]
fn every_source_bench_and_fuzz_file_is_in_the_codemap() {
    // Proves the codemap names each Rust file of src/, benches/ and fuzz/fuzz_targets/
    // (by its name, under its directory's entry), and .ci/run.
    let map = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("map");
    let mut missing = Vec::new();
    for dir in ["src", "benches", "fuzz/fuzz_targets"] {
        for file in rust_files(dir) {
            let rel = file.strip_prefix(root()).expect("under root");
            let name = file
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            // A file in a subdirectory may be named with that directory (`storage/sim.rs`).
            let parent = rel
                .parent()
                .and_then(|p| p.file_name())
                .map(|p| format!("{}/{name}", p.to_string_lossy()));
            let named =
                map.contains(&name) || parent.as_ref().is_some_and(|p| map.contains(p.as_str()));
            if !named {
                missing.push(rel.display().to_string());
            }
        }
    }
    if !map.contains(".ci/run") {
        missing.push(".ci/run".into());
    }
    assert!(
        missing.is_empty(),
        "not in docs/ARCHITECTURE.md: {missing:?}"
    );
}

/// Every `crate::<module>` path a file mentions outside comments, as `module::rest`;
/// a `use crate::a::{b, c::d}` gives `a::b` and `a::c::d`.
fn crate_paths(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).expect("read");
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ");
    let is_path = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let end = rest.find(|c: char| !is_path(c)).unwrap_or(rest.len());
        let prefix = &rest[..end];
        if prefix.ends_with("::") && rest[end..].starts_with('{') {
            let close = rest[end..].find('}').map_or(rest.len(), |j| end + j);
            for item in rest[end + 1..close].split(',') {
                let item: String = item.trim().chars().take_while(|c| is_path(*c)).collect();
                if !item.is_empty() {
                    out.push(format!("{prefix}{item}"));
                }
            }
        } else {
            out.push(prefix.trim_end_matches("::").to_owned());
        }
    }
    out
}

#[test]
fn the_layers_use_only_what_the_map_allows() {
    // Proves the rules of docs/ARCHITECTURE.md's bird's-eye view, read from imports:
    // the engine uses neither the store nor HTTP, the store uses no HTTP, and HTTP takes
    // from the engine only the plain value types the map names.
    const HTTP_MAY_USE_FROM_LOG: [&str; 7] = [
        "log::Offset",
        "log::FsyncPolicy",
        "log::WriterStats",
        "log::stats::FSYNC_BUCKETS_US",
        "log::limits::RECORD_PAYLOAD_BYTES_MAX",
        "log::limits::RECORD_KEY_BYTES_MAX",
        "log::limits::APPEND_BATCH_RECORDS_MAX",
    ];
    let mut broken = Vec::new();
    for (dir, forbidden) in [
        ("src/log", &["store", "http", "cli"][..]),
        ("src/store", &["http", "cli"][..]),
        ("src/http", &["cli"][..]),
    ] {
        for file in rust_files(dir) {
            for path in crate_paths(&file) {
                let module = path.split("::").next().unwrap_or("");
                if forbidden.contains(&module) {
                    broken.push(format!("{} uses crate::{path}", file.display()));
                }
                if dir == "src/http"
                    && module == "log"
                    && !HTTP_MAY_USE_FROM_LOG.contains(&path.as_str())
                {
                    broken.push(format!("{} uses crate::{path}", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn the_store_reaches_events_only_through_the_partition_seam() {
    // Proves the seam is the only way to a flow's events: in src/store, only the Log
    // backend (partition/log.rs) and the two logs that are not events (the request log,
    // opened in flow/mod.rs, and the consumer log, consumers.rs) name the engine's `Log`.
    const MAY_NAME_LOG: [&str; 3] = [
        "src/store/partition/log.rs",
        "src/store/flow/mod.rs",
        "src/store/consumers.rs",
    ];
    let mut broken = Vec::new();
    for file in rust_files("src/store") {
        let rel = file
            .strip_prefix(root())
            .expect("under root")
            .display()
            .to_string();
        let names_log = crate_paths(&file)
            .iter()
            .any(|p| p == "log::Log" || p.starts_with("log::Log::"));
        if names_log && !MAY_NAME_LOG.contains(&rel.as_str()) {
            broken.push(rel);
        }
    }
    assert!(broken.is_empty(), "these name log::Log: {broken:?}");
}
