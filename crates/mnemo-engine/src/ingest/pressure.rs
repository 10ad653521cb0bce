//! Backpressure: how hard the engine is pressed, as one number and a state with
//! hysteresis, plus the measured drain rate that admission control turns into
//! `retry_after`.
//!
//! Pressure is the worst fill of: the admission budget (items and bytes), the fullest
//! space's fresh tier, and the log writer's backlog. The monitor samples a handful of
//! atomics every `pressure_sample_ms` (default 10 ms), so it costs next to nothing.

use serde::Serialize;
use std::time::Duration;

/// Where the engine stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PressureState {
    /// Below 50 %: everything is admitted.
    #[default]
    Normal,
    /// 50–80 %: admitted; clients should slow down (credit window halved).
    Warning,
    /// 80–95 %: admitted; credit window an eighth.
    Critical,
    /// 95 % and above: new observations are refused with `retry_after`.
    Overloaded,
}

impl PressureState {
    /// Lower bound of each state above Normal.
    const ENTER: [f64; 3] = [0.50, 0.80, 0.95];
    /// A state is left downwards only this far below its lower bound (no flapping).
    pub const HYSTERESIS: f64 = 0.05;

    fn level(self) -> usize {
        self as usize
    }

    fn from_level(level: usize) -> Self {
        match level {
            0 => PressureState::Normal,
            1 => PressureState::Warning,
            2 => PressureState::Critical,
            _ => PressureState::Overloaded,
        }
    }

    /// The state after `self` when the pressure is `p` (0..=1+): up as soon as a bound
    /// is reached, down only once `p` is [`Self::HYSTERESIS`] below it.
    pub fn next(self, p: f64) -> Self {
        let up = Self::ENTER.iter().filter(|t| p >= **t).count();
        if up > self.level() {
            return Self::from_level(up);
        }
        let down = Self::ENTER
            .iter()
            .filter(|t| p >= **t - Self::HYSTERESIS)
            .count();
        Self::from_level(down.min(self.level()))
    }

    /// The credit window a session gets in this state, from the configured base.
    pub fn window(self, base: u32) -> u32 {
        match self {
            PressureState::Normal => base,
            PressureState::Warning => (base / 2).max(1),
            PressureState::Critical => (base / 8).max(1),
            PressureState::Overloaded => 1,
        }
    }
}

/// One sample of the monitor. Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PressureReport {
    /// The state (with hysteresis).
    pub state: PressureState,
    /// The raw pressure, 0..=1 (may exceed 1 briefly).
    pub pressure: f64,
    /// Observations admitted and not yet indexed.
    pub queue_items: usize,
    /// Their limit.
    pub queue_max_items: usize,
    /// Bytes admitted and not yet indexed.
    pub queue_bytes: usize,
    /// Their limit.
    pub queue_max_bytes: usize,
    /// Items waiting per lane (high, normal, low), all spaces.
    pub lane_depths: [usize; 3],
    /// Fill of the fullest space's fresh tier, 0..=1.
    pub fresh_fill: f64,
    /// Rows in all fresh tiers.
    pub fresh_rows: usize,
    /// Fill of the fullest space's warm tier, 0..=1.
    pub warm_fill: f64,
    /// Rows in all warm tiers.
    pub warm_rows: usize,
    /// Bytes waiting for the log writer.
    pub log_pending_bytes: u64,
    /// Records indexed per second, smoothed (EWMA, ~1 s), measured while there is work.
    pub drain_rate: f64,
    /// The credit window sessions get now.
    pub credit_window: u32,
    /// What an observation refused now is told: time to drain back to Warning.
    pub retry_after: Duration,
    /// Suggested client batch size.
    pub suggested_batch: u32,
}

/// Bounds of `retry_after`.
pub const RETRY_AFTER_MIN: Duration = Duration::from_millis(10);
/// Upper bound of `retry_after`.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(30);

/// Time to bring `excess_items` down at `drain_rate` records/s, bounded to
/// [`RETRY_AFTER_MIN`]..=[`RETRY_AFTER_MAX`].
pub(crate) fn retry_after(excess_items: f64, drain_rate: f64) -> Duration {
    let secs = excess_items.max(0.0) / drain_rate.max(1e-3);
    let secs = secs.clamp(RETRY_AFTER_MIN.as_secs_f64(), RETRY_AFTER_MAX.as_secs_f64());
    Duration::from_secs_f64(secs)
}

/// Exponentially weighted moving average of a rate, with time constant `tau`.
#[derive(Debug, Clone)]
pub(crate) struct Ewma {
    tau: f64,
    value: f64,
    primed: bool,
}

impl Ewma {
    pub(crate) fn new(tau: Duration) -> Self {
        Ewma {
            tau: tau.as_secs_f64(),
            value: 0.0,
            primed: false,
        }
    }

    /// Folds in `count` events over `dt`.
    pub(crate) fn observe(&mut self, count: f64, dt: Duration) {
        let dt = dt.as_secs_f64();
        if dt <= 0.0 {
            return;
        }
        let rate = count / dt;
        if !self.primed {
            self.value = rate;
            self.primed = true;
            return;
        }
        let alpha = 1.0 - (-dt / self.tau).exp();
        self.value += alpha * (rate - self.value);
    }

    pub(crate) fn value(&self) -> f64 {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PressureState::*;
    use proptest::prelude::*;

    #[test]
    fn thresholds() {
        assert_eq!(Normal.next(0.49), Normal);
        assert_eq!(Normal.next(0.50), Warning);
        assert_eq!(Normal.next(0.80), Critical);
        assert_eq!(Normal.next(0.95), Overloaded);
        assert_eq!(Normal.next(1.5), Overloaded);
    }

    #[test]
    fn hysteresis_prevents_flapping() {
        assert_eq!(Warning.next(0.49), Warning, "just under the bound: stay");
        assert_eq!(Warning.next(0.451), Warning);
        assert_eq!(Warning.next(0.44), Normal);
        assert_eq!(Overloaded.next(0.93), Overloaded);
        assert_eq!(Overloaded.next(0.89), Critical);
        assert_eq!(
            Overloaded.next(0.10),
            Normal,
            "a big drop goes straight down"
        );
    }

    proptest! {
        /// Oscillating within the hysteresis band never changes the state more than once.
        #[test]
        fn no_flapping_in_band(base in 0.5f64..1.0, wiggle in prop::collection::vec(0.0f64..0.049, 1..200)) {
            let mut s = Normal.next(base);
            let start = s;
            let mut changes = 0;
            for w in wiggle {
                let n = s.next(base - w);
                if n != s { changes += 1; }
                s = n;
            }
            prop_assert!(changes <= 1, "from {start:?}: {changes} changes");
        }

        #[test]
        fn retry_after_is_bounded(excess in -1e9f64..1e12, rate in 0.0f64..1e9) {
            let r = retry_after(excess, rate);
            prop_assert!(r >= RETRY_AFTER_MIN && r <= RETRY_AFTER_MAX);
        }
    }

    #[test]
    fn credit_window_shrinks_under_pressure() {
        assert_eq!(
            [Normal, Warning, Critical, Overloaded].map(|s| s.window(1024)),
            [1024, 512, 128, 1]
        );
        assert_eq!(Critical.window(4), 1, "never zero");
    }

    #[test]
    fn retry_after_follows_the_drain_rate() {
        assert_eq!(retry_after(1000.0, 1000.0), Duration::from_secs(1));
        assert_eq!(retry_after(1.0, 1e9), RETRY_AFTER_MIN);
        assert_eq!(retry_after(1e9, 1.0), RETRY_AFTER_MAX);
    }

    #[test]
    fn ewma_converges() {
        let mut e = Ewma::new(Duration::from_secs(1));
        for _ in 0..1000 {
            e.observe(10.0, Duration::from_millis(10));
        }
        assert!((e.value() - 1000.0).abs() < 1.0, "{}", e.value());
        for _ in 0..100 {
            e.observe(5.0, Duration::from_millis(10));
        }
        assert!(e.value() < 700.0 && e.value() > 500.0, "{}", e.value());
    }
}
