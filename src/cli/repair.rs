//! `eventmesh repair <partition-dir> [--dry-run]`.

use std::path::Path;
use std::process::ExitCode;

use crate::log::repair::{repair_partition, RepairReport};
use crate::log::scan::DamageKind;
use crate::log::storage::StdStorage;

fn print_report(r: &RepairReport, dry_run: bool) {
    let Some((file, damage)) = &r.damage else {
        println!(
            "{}: no damage; {} records, next offset {}. Nothing to do.",
            r.dir.display(),
            r.kept_records,
            r.next_offset
        );
        return;
    };
    let kind = match damage.kind {
        DamageKind::TornTail => "TORN TAIL",
        DamageKind::Corruption => "CORRUPTION",
    };
    println!(
        "{}: first damage: {kind} in {} at byte {}: {}",
        r.dir.display(),
        file.display(),
        damage.position,
        damage.reason
    );
    let verb = if dry_run { "would keep" } else { "kept" };
    println!(
        "{verb} {} records (the partition ends at offset {}); set aside {} bytes of the damaged segment and {} later segment(s), holding {} record(s) that still pass their checksum",
        r.kept_records, r.next_offset, r.bytes_set_aside, r.segments_set_aside, r.records_set_aside
    );
    for side in &r.side_files {
        println!("  side file: {}", side.display());
    }
    if dry_run {
        println!("dry run: nothing was changed");
    } else {
        println!("repaired: restart the server and the flow serves again");
    }
}

pub fn run(dir: &Path, dry_run: bool) -> ExitCode {
    match repair_partition(&StdStorage, dir, dry_run) {
        Ok(report) => {
            print_report(&report, dry_run);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eventmesh repair: {e}");
            ExitCode::from(3)
        }
    }
}
