//! `eventmesh check <dir>`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::log::check::{check_partition, IndexState, PartitionCheck, Verdict};
use crate::log::recovery::DamageKind;
use crate::log::segment::{self, SEGMENT_SUFFIX};
use crate::log::storage::StdStorage;

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

pub fn run(dir: &Path) -> ExitCode {
    let partitions = match find_partitions(dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("eventmesh check: cannot read {}: {e}", dir.display());
            return ExitCode::from(3);
        }
    };
    if partitions.is_empty() {
        eprintln!(
            "eventmesh check: no partitions found under {}",
            dir.display()
        );
        return ExitCode::from(3);
    }
    let mut worst = Verdict::Clean;
    for part in &partitions {
        match check_partition(&StdStorage, part) {
            Ok(report) => {
                print_partition(&report);
                worst = worst.max(report.verdict());
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
