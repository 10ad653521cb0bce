//! The pressure monitor thread: samples the pipeline every `pressure_sample_ms`,
//! moves the pressure state (with hysteresis), measures the drain rate, publishes
//! the report to subscribers on every state change, exports gauges, and expires
//! idle sessions.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Inner;
use crate::ingest::pressure::{Ewma, PressureReport, PressureState, retry_after};
use crate::ingest::stats::{Counters, names};
use crate::log::Log;

/// Where `retry_after` aims: the top of Warning, minus the hysteresis, so a retry
/// lands once the state has actually come down.
const DRAIN_TARGET: f64 = 0.80 - PressureState::HYSTERESIS;

pub(super) fn run(inner: &Inner) {
    let period = Duration::from_millis(inner.config.ingest.pressure_sample_ms);
    let mut drain = Ewma::new(Duration::from_secs(1));
    let mut last = Instant::now();
    let mut last_indexed = inner.registry.counters.indexed.load(Ordering::Relaxed);
    let mut last_busy = false;
    let mut last_expiry = Instant::now();
    let mut state = PressureState::Normal;
    while !inner.stopping.load(Ordering::Acquire) {
        {
            let mut g = inner.stop_lock.lock();
            if inner.stopping.load(Ordering::Acquire) {
                return;
            }
            inner.stop_cv.wait_for(&mut g, period);
        }
        let began = Instant::now();
        let indexed = inner.registry.counters.indexed.load(Ordering::Relaxed);
        let busy = inner.registry.budget.items() > 0;
        // The drain rate is what the workers achieve while they have work; idle
        // stretches would drag it to zero and make retry_after meaningless.
        if busy || last_busy {
            drain.observe((indexed - last_indexed) as f64, began - last);
        }
        last_busy = busy;
        last_indexed = indexed;
        last = began;

        let mut report = sample(inner, drain.value());
        state = state.next(report.pressure);
        report.state = state;
        report.credit_window = state.window(inner.config.ingest.credit_window);
        report.suggested_batch = (report.credit_window / 4).clamp(1, 256);
        publish(inner, report);

        if began.duration_since(last_expiry) >= Duration::from_secs(1) {
            last_expiry = began;
            inner.sessions.expire_idle(Duration::from_secs(
                inner.config.ingest.session_idle_timeout_s,
            ));
        }
        inner
            .registry
            .counters
            .monitor_busy_ns
            .fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// The warm tier's share of pressure: none below [`WARM_QUIET`] of its capacity
/// (absorbing what the graph cannot take yet is its job, and it drains only at
/// the graph's rate, so throttling early would cap ingest at that rate), then
/// rising to 1 when it is full: Warning from ~65 %, Overloaded from ~97 %.
fn warm_pressure(fill: f64) -> f64 {
    ((fill - WARM_QUIET) / (1.0 - WARM_QUIET)).max(0.0)
}

/// Fill of the warm tier below which it adds no pressure.
const WARM_QUIET: f64 = 0.3;

/// Reads the fills and turns them into pressure and `retry_after`.
fn sample(inner: &Inner, drain_rate: f64) -> PressureReport {
    let reg = &inner.registry;
    let budget = &reg.budget;
    let (items, bytes) = (budget.items(), budget.bytes());
    let items_fill = items as f64 / budget.max_items() as f64;
    let bytes_fill = bytes as f64 / budget.max_bytes() as f64;
    let mut lane_depths = [0usize; 3];
    let (mut fresh_fill, mut fresh_rows, mut fresh_excess) = (0.0f64, 0usize, 0.0f64);
    let (mut warm_fill, mut warm_rows) = (0.0f64, 0usize);
    for space in reg.by_no.read().values() {
        for (d, n) in lane_depths.iter_mut().zip(space.queue.lane_depths()) {
            *d += n;
        }
        let (len, cap) = (space.fresh.len(), space.fresh.capacity());
        let fill = len as f64 / cap as f64;
        fresh_fill = fresh_fill.max(fill);
        fresh_rows += len;
        fresh_excess = fresh_excess.max((fill - DRAIN_TARGET) * cap as f64);
        let (len, cap) = (space.warm.len(), space.warm.capacity());
        if cap > 0 {
            warm_fill = warm_fill.max(len as f64 / cap as f64);
        }
        warm_rows += len;
    }
    let log_pending = inner.log.stats().pending_bytes;
    let log_fill = log_pending as f64 / (4 * inner.config.log.max_batch_bytes) as f64;
    let pressure = items_fill
        .max(bytes_fill)
        .max(fresh_fill)
        .max(warm_pressure(warm_fill))
        .max(log_fill);
    // Records to drain to get back to Warning, whichever bound is the tightest.
    let avg_bytes = if items > 0 {
        bytes as f64 / items as f64
    } else {
        1.0
    };
    let excess = ((items_fill - DRAIN_TARGET) * budget.max_items() as f64)
        .max((bytes_fill - DRAIN_TARGET) * budget.max_bytes() as f64 / avg_bytes)
        .max(fresh_excess);
    PressureReport {
        state: PressureState::Normal,
        pressure,
        queue_items: items,
        queue_max_items: budget.max_items(),
        queue_bytes: bytes,
        queue_max_bytes: budget.max_bytes(),
        lane_depths,
        fresh_fill,
        fresh_rows,
        warm_fill,
        warm_rows,
        log_pending_bytes: log_pending,
        drain_rate,
        credit_window: 0,
        retry_after: retry_after(excess, drain_rate),
        suggested_batch: 1,
    }
}

fn publish(inner: &Inner, report: PressureReport) {
    let reg = &inner.registry;
    reg.retry_after_us
        .store(report.retry_after.as_micros() as u64, Ordering::Release);
    let previous = reg.state.swap(report.state as u8, Ordering::AcqRel);
    let changed = previous != report.state as u8;
    if changed {
        Counters::bump(&reg.counters.state_changes);
        tracing::info!(state = ?report.state, pressure = report.pressure, "pressure state changed");
    }
    for (lane, depth) in ["high", "normal", "low"].iter().zip(report.lane_depths) {
        metrics::gauge!(names::QUEUE_DEPTH, "lane" => *lane).set(depth as f64);
    }
    metrics::gauge!(names::QUEUE_BYTES).set(report.queue_bytes as f64);
    metrics::gauge!(names::FRESH_ROWS).set(report.fresh_rows as f64);
    metrics::gauge!(names::WARM_ROWS).set(report.warm_rows as f64);
    metrics::gauge!(names::PRESSURE).set(report.pressure);
    metrics::gauge!(names::PRESSURE_STATE).set(f64::from(report.state as u8));
    metrics::gauge!(names::DRAIN_RATE).set(report.drain_rate);
    metrics::gauge!(names::SESSIONS).set(inner.sessions.len() as f64);
    // Subscribers wake only on a state change; the numbers are always current.
    inner.pressure.send_if_modified(|current| {
        *current = report;
        changed
    });
}
