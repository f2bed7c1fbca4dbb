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

/// Refuses a partition whose data directory a server has open (its journal is locked),
/// or whose journal holds records the next start writes back into the segments: a
/// repair before that would set aside bytes that replay restores.
fn journal_refusal(dir: &Path) -> Option<String> {
    use crate::log::journal::{checkpoint, JOURNAL_DIR};
    use crate::log::storage::Storage;
    let journal = dir
        .ancestors()
        .skip(1)
        .map(|root| root.join(JOURNAL_DIR))
        .find(|j| j.is_dir())?;
    let Ok(_lock) = StdStorage.lock_dir(&journal) else {
        return Some(format!(
            "{} is open in a running server: stop it first",
            journal.display()
        ));
    };
    let report = crate::log::check::check_partition(&StdStorage, &journal).ok()?;
    let end = report.segments.last().map_or(0, |s| s.base.0 + s.records);
    let from = checkpoint::load(&StdStorage, &journal)
        .ok()
        .flatten()
        .map_or(0, |o| o.0);
    (end > from).then(|| {
        format!(
            "the journal {} holds {} records past its checkpoint, which the server writes back into the flows' segments when it starts: start the server once and stop it, then repair what is still damaged",
            journal.display(),
            end - from
        )
    })
}

pub fn run(dir: &Path, dry_run: bool) -> ExitCode {
    if let Some(why) = journal_refusal(dir) {
        eprintln!("eventmesh repair: {why}");
        return ExitCode::from(3);
    }
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
