//! `eventmesh check <dir>`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::log::check::{check_partition, IndexState, PartitionCheck, Verdict};
use crate::log::scan::DamageKind;
use crate::log::segment::{self, SEGMENT_SUFFIX};
use crate::log::storage::{StdStorage, Storage};

/// Every directory under `root` (itself included) that holds segment files.
pub fn find_partitions(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut has_segment = false;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else if segment::parse_name(&name, SEGMENT_SUFFIX).is_some() {
                has_segment = true;
            }
        }
        if has_segment {
            found.push(dir);
        }
    }
    found.sort();
    Ok(found)
}

fn print_partition(p: &PartitionCheck) {
    println!(
        "{}: {} segments, {} records",
        p.dir.display(),
        p.segments.len(),
        p.records()
    );
    for gap in &p.gaps {
        println!("  CORRUPTION: {gap}");
    }
    for s in &p.segments {
        if let Some(d) = &s.damage {
            let what = match d.kind {
                DamageKind::TornTail => "TORN TAIL (recovery would truncate it)",
                DamageKind::Corruption => "CORRUPTION (recovery refuses it)",
            };
            println!(
                "  {what}: {} at byte {}: {}",
                s.file.display(),
                d.position,
                d.reason
            );
        }
        match s.index {
            IndexState::Missing => println!(
                "  index missing for {} (open rebuilds it)",
                s.file.display()
            ),
            IndexState::Doubtful => println!(
                "  index doubtful for {} (open rebuilds it)",
                s.file.display()
            ),
            IndexState::Valid | IndexState::Active => {}
        }
    }
}

/// For a data directory: each flow whose flow file cannot be read, or whose logs are
/// missing (the server quarantines such a flow), as lines to print.
fn missing_flow_logs(dir: &Path) -> Vec<String> {
    use crate::store::flow_file;
    use crate::store::ids;
    // Only a server's data directory (it has `meta.json`), and only the directories the
    // server takes for flows (named as flow ids).
    if !StdStorage.exists(&crate::store::meta::meta_path(dir)) {
        return Vec::new();
    }
    let flows_dir = dir.join("flows");
    let Ok(mut names) = StdStorage.list(&flows_dir) else {
        return Vec::new();
    };
    names.retain(|name| ids::is_token(name, ids::FLOW_PREFIX, ids::FLOW_ID_BYTES));
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let flow_dir = flows_dir.join(&name);
        if !flow_dir.is_dir() || StdStorage.exists(&flow_dir.join(flow_file::FLOW_DELETED_FILE)) {
            continue;
        }
        let flow = match flow_file::load_document(&StdStorage, &flow_dir) {
            Ok(Some(flow)) => flow,
            Ok(None) if StdStorage.exists(&flow_dir.join(flow_file::FLOW_CREATING_FILE)) => {
                // A creation a crash cut short: the next start removes it.
                continue;
            }
            Ok(None) => {
                out.push(format!(
                    "flow {name} is unavailable: {} is missing (damage)",
                    flow_dir.join(flow_file::FLOW_FILE).display()
                ));
                continue;
            }
            Err(e) => {
                out.push(format!("flow {name} is unavailable: {e}"));
                continue;
            }
        };
        for log in ["events", "requests", "consumers"] {
            let part = dir.join("flows").join(&flow.id).join(log);
            let has_segment = std::fs::read_dir(&part).is_ok_and(|entries| {
                entries.filter_map(Result::ok).any(|e| {
                    segment::parse_name(&e.file_name().to_string_lossy(), SEGMENT_SUFFIX).is_some()
                })
            });
            if !has_segment {
                out.push(format!(
                    "flow {} ({:?}) is unavailable: its {log} log {} is missing",
                    flow.id,
                    flow.name,
                    part.display()
                ));
            }
        }
    }
    out
}

/// The flow a partition belongs to, from its path (`…/flows/<flowId>/<log>`).
fn flow_of(part: &Path) -> Option<String> {
    let flow = part.parent()?;
    (flow.parent()?.file_name()? == "flows")
        .then(|| flow.file_name()?.to_str().map(str::to_owned))
        .flatten()
}

/// Journal records past the checkpoint, if `part` is a data directory's journal: the
/// server replays them into the flows' segments at its next start.
fn unreplayed(part: &Path, report: &crate::log::check::PartitionCheck) -> Option<u64> {
    if part.file_name()? != crate::log::journal::JOURNAL_DIR {
        return None;
    }
    let end = report.segments.last().map(|s| s.base.0 + s.records)?;
    let from = crate::log::journal::checkpoint::load(&StdStorage, part)
        .ok()
        .flatten()
        .map_or(0, |o| o.0);
    Some(end.saturating_sub(from))
}

pub fn run(dir: &Path) -> ExitCode {
    let missing = missing_flow_logs(dir);
    let partitions = match find_partitions(dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("eventmesh check: cannot read {}: {e}", dir.display());
            return ExitCode::from(3);
        }
    };
    if partitions.is_empty() && missing.is_empty() {
        eprintln!(
            "eventmesh check: no partitions found under {}",
            dir.display()
        );
        return ExitCode::from(3);
    }
    let mut worst = Verdict::Clean;
    for line in &missing {
        println!("CORRUPTION: {line}");
        worst = Verdict::Corrupt;
    }
    for part in &partitions {
        match check_partition(&StdStorage, part) {
            Ok(report) => {
                print_partition(&report);
                if let Some(n) = unreplayed(part, &report).filter(|&n| n > 0) {
                    println!(
                        "  journal: {n} records past its checkpoint; the server writes them back into the flows' segments when it starts, so a flow's segment may show here a torn tail or damage that the start repairs (start and stop the server, then check again)"
                    );
                }
                let verdict = report.verdict();
                if let (Verdict::Corrupt, Some(flow)) = (verdict, flow_of(part)) {
                    println!(
                        "  flow {flow} is unavailable: the server quarantines it (503 flow_unavailable) until `eventmesh repair {}`",
                        part.display()
                    );
                }
                worst = worst.max(verdict);
            }
            Err(e) => {
                eprintln!("eventmesh check: {e}");
                return ExitCode::from(3);
            }
        }
    }
    match worst {
        Verdict::Clean => {
            println!("clean");
            ExitCode::SUCCESS
        }
        Verdict::Repairable => {
            println!("repairable: open would truncate the torn tail or rebuild indexes");
            ExitCode::from(2)
        }
        Verdict::Corrupt => {
            println!("corrupt: open refuses this data");
            ExitCode::from(1)
        }
    }
}
