//! The distributed mode's Prometheus metrics (served by `mnemo serve` on /metrics
//! with the engine's).

/// 1 while this node writes the partition (label `partition`), else 0.
pub(crate) const OWNER: &str = "mnemo_partition_owner";
/// The highest stream sequence of the partition applied here (label `partition`).
pub(crate) const APPLIED: &str = "mnemo_partition_applied_sequence";
/// Group commits this node published to the shared log (label `partition`).
pub(crate) const APPENDS: &str = "mnemo_shared_log_appends_total";
/// Times this node stepped down as a writer (fenced, lease lost, unsettled append).
pub(crate) const STEP_DOWNS: &str = "mnemo_partition_step_downs_total";
/// Stream messages this node followed into its local log (label `partition`).
pub(crate) const FOLLOWED: &str = "mnemo_shared_log_followed_total";
/// Checkpoints written to object storage, and stream trims.
pub(crate) const CHECKPOINTS: &str = "mnemo_object_checkpoints_total";

/// Sets the owner gauge of partition `p`.
pub(crate) fn owner(p: usize, owned: bool) {
    metrics::gauge!(OWNER, "partition" => p.to_string()).set(if owned { 1.0 } else { 0.0 });
}
