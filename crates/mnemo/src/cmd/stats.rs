//! `mnemo stats`: pressure, counters and memory of a running server.

use mnemo_client::pb;

use super::conn::Conn;

pub(crate) async fn stats(conn: Conn, json: bool) -> anyhow::Result<()> {
    let s = conn.connect().await?.stats().await?;
    let p = s.pressure.unwrap_or_default();
    let state = pb::PressureState::try_from(p.state)
        .map(|s| s.as_str_name())
        .unwrap_or("?");
    if json {
        let spaces: Vec<_> = s
            .spaces
            .iter()
            .map(|sp| {
                let i = sp.info.clone().unwrap_or_default();
                let st = sp.stats.unwrap_or_default();
                serde_json::json!({"name": i.name, "dim": i.dim, "committed_lsn": st.committed_lsn,
                    "indexed_lsn": st.indexed_lsn, "indexed_count": st.indexed_count,
                    "fresh_count": st.fresh_count, "warm_count": st.warm_count,
                    "checkpoint_lsn": st.checkpoint_lsn,
                    "live_bytes": st.live_bytes, "dead_bytes": st.dead_bytes,
                    "unpurged": st.unpurged, "oldest_snapshot_lsn": st.oldest_snapshot_lsn})
            })
            .collect();
        let v = serde_json::json!({
            "server_rss_bytes": s.server_rss_bytes, "server_peak_rss_bytes": s.server_peak_rss_bytes,
            "accepted": s.accepted, "refused": s.refused, "duplicates": s.duplicates,
            "indexed": s.indexed, "sessions_open": s.sessions_open, "log_bytes": s.log_bytes,
            "pressure_state": state, "pressure": p.pressure, "queue_depth": p.queue_depth,
            "queue_capacity": p.queue_capacity, "drain_rate": p.drain_rate, "spaces": spaces,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "pressure {state} ({:.0} %), queue {}/{}, drain {:.0}/s, sessions {}",
        p.pressure * 100.0,
        p.queue_depth,
        p.queue_capacity,
        p.drain_rate,
        s.sessions_open
    );
    println!(
        "accepted {}  indexed {}  duplicates {}  refused {}  RSS {} MiB (peak {} MiB)  log {} MiB",
        s.accepted,
        s.indexed,
        s.duplicates,
        s.refused,
        s.server_rss_bytes >> 20,
        s.server_peak_rss_bytes >> 20,
        s.log_bytes >> 20
    );
    for sp in &s.spaces {
        let i = sp.info.clone().unwrap_or_default();
        let st = sp.stats.unwrap_or_default();
        println!(
            "  {:<24} committed {:>9}  in graph {:>9}  fresh {:>7}  warm {:>9}  live {:>6} MiB  dead {:>6} MiB",
            i.name,
            st.committed_lsn,
            st.indexed_count,
            st.fresh_count,
            st.warm_count,
            st.live_bytes >> 20,
            st.dead_bytes >> 20
        );
    }
    Ok(())
}
