//! `mnemo repair <data-dir>`: the offline log repair, and its report.

use std::path::Path;

pub(crate) fn run(data_dir: &Path) -> anyhow::Result<()> {
    let r = mnemo_engine::repair(data_dir)?;
    println!(
        "scanned {} segments, {} valid records kept",
        r.segments_scanned, r.frames_kept
    );
    if r.rewritten.is_empty() {
        println!("no damage found; nothing was changed");
        return Ok(());
    }
    for s in &r.rewritten {
        let ranges: Vec<String> = s.damaged.iter().map(|(a, b)| format!("{a}..{b}")).collect();
        println!(
            "rewrote {}: damaged bytes {}; {} placeholders for lost records; original kept as {}",
            s.file.display(),
            ranges.join(", "),
            s.placeholders,
            s.original.display()
        );
        if s.duplicates_dropped > 0 {
            println!(
                "  dropped {} records whose LSN was already taken",
                s.duplicates_dropped
            );
        }
    }
    for l in &r.lost {
        println!(
            "lost: space '{}' LSNs {}..={} ({} records)",
            l.space,
            l.first,
            l.last,
            l.last - l.first + 1
        );
    }
    for (space, last) in &r.uncertain_tails {
        println!(
            "uncertain: space '{space}': damage follows its last surviving record (LSN {last}); records after it may have been lost, and how many cannot be told"
        );
    }
    if r.lost.is_empty() && r.uncertain_tails.is_empty() {
        println!("no record was lost");
    }
    Ok(())
}
