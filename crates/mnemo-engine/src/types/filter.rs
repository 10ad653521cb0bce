//! What a recall or an export may ask about a memory besides its vector: a
//! [`Filter`] (tags, sessions, time ranges, confidence) and a [`Ranking`] that
//! weighs similarity by recency and confidence. Both are checked before use: a bad
//! one is `InvalidArgument` naming the clause, and every bound is here.

use std::collections::BTreeMap;
use std::time::Duration;

use super::limits::{MAX_SESSION_ID_BYTES, MAX_TAG_KEY_BYTES, MAX_TAGS_BYTES};
use crate::error::{Error, Result};

/// Most tag clauses in one filter.
pub const MAX_FILTER_TAG_CLAUSES: usize = 16;
/// Most values in one `any_of` clause.
pub const MAX_FILTER_VALUES: usize = 64;
/// Most session ids in one filter.
pub const MAX_FILTER_SESSIONS: usize = 64;
/// Largest confidence weight of a ranking.
pub const MAX_CONFIDENCE_WEIGHT: f32 = 16.0;

/// A half-open time range `[from_us, until_us)` in µs since the Unix epoch; an
/// absent bound is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// Inclusive lower bound.
    pub from_us: Option<i64>,
    /// Exclusive upper bound.
    pub until_us: Option<i64>,
}

impl TimeRange {
    /// True if `t` is in the range.
    pub fn contains(&self, t: i64) -> bool {
        self.from_us.is_none_or(|f| t >= f) && self.until_us.is_none_or(|u| t < u)
    }

    /// True if the range has no bound.
    pub fn is_open(&self) -> bool {
        self.from_us.is_none() && self.until_us.is_none()
    }

    fn validate(&self, name: &str) -> Result<()> {
        if let (Some(f), Some(u)) = (self.from_us, self.until_us)
            && f >= u
        {
            return Err(Error::invalid(format!(
                "filter.{name}: the range is empty or inverted (from_us {f} >= until_us {u})"
            )));
        }
        Ok(())
    }
}

/// One test on a tag key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagTest {
    /// The tag equals this value.
    Equals(String),
    /// The tag equals one of these values.
    AnyOf(Vec<String>),
    /// The tag is present.
    Present,
    /// The tag is absent.
    Absent,
}

/// A test on one tag key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagClause {
    /// The tag key.
    pub key: String,
    /// The test.
    pub test: TagTest,
}

/// A restriction of a recall or an export: every clause must hold. The default
/// (no clause) matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Tag clauses.
    pub tags: Vec<TagClause>,
    /// The memory came from one of these sessions (empty: any).
    pub session_ids: Vec<String>,
    /// When it happened.
    pub occurred_at: TimeRange,
    /// When the server recorded it.
    pub recorded_at: TimeRange,
    /// Least confidence.
    pub min_confidence: Option<f32>,
}

/// What a filter is checked against: a memory's attributes.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    /// Tags.
    pub tags: &'a BTreeMap<String, String>,
    /// Session id ("" for none).
    pub session_id: &'a str,
    /// When it happened (µs).
    pub occurred_at_us: i64,
    /// When it was recorded (µs).
    pub recorded_at_us: i64,
    /// Confidence.
    pub confidence: f32,
}

impl Filter {
    /// True if the filter has no clause (it matches everything).
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
            && self.session_ids.is_empty()
            && self.occurred_at.is_open()
            && self.recorded_at.is_open()
            && self.min_confidence.is_none()
    }

    /// Checks every bound; the error names the first bad clause.
    pub fn validate(&self) -> Result<()> {
        if self.tags.len() > MAX_FILTER_TAG_CLAUSES {
            return Err(Error::invalid(format!(
                "filter.tags: {} clauses, the limit is {MAX_FILTER_TAG_CLAUSES}",
                self.tags.len()
            )));
        }
        for (i, c) in self.tags.iter().enumerate() {
            if c.key.is_empty() || c.key.len() > MAX_TAG_KEY_BYTES {
                return Err(Error::invalid(format!(
                    "filter.tags[{i}]: the key must be 1..={MAX_TAG_KEY_BYTES} bytes"
                )));
            }
            let values: &[String] = match &c.test {
                TagTest::Equals(v) => std::slice::from_ref(v),
                TagTest::AnyOf(vs) if vs.is_empty() || vs.len() > MAX_FILTER_VALUES => {
                    return Err(Error::invalid(format!(
                        "filter.tags[{i}] ({}): any_of needs 1..={MAX_FILTER_VALUES} values, got {}",
                        c.key,
                        vs.len()
                    )));
                }
                TagTest::AnyOf(vs) => vs,
                TagTest::Present | TagTest::Absent => &[],
            };
            if let Some(v) = values.iter().find(|v| v.len() > MAX_TAGS_BYTES) {
                return Err(Error::invalid(format!(
                    "filter.tags[{i}] ({}): a value of {} bytes, the limit is {MAX_TAGS_BYTES}",
                    c.key,
                    v.len()
                )));
            }
        }
        if self.session_ids.len() > MAX_FILTER_SESSIONS {
            return Err(Error::invalid(format!(
                "filter.session_ids: {} ids, the limit is {MAX_FILTER_SESSIONS}",
                self.session_ids.len()
            )));
        }
        if let Some(s) = self
            .session_ids
            .iter()
            .find(|s| s.is_empty() || s.len() > MAX_SESSION_ID_BYTES)
        {
            return Err(Error::invalid(format!(
                "filter.session_ids: an id of {} bytes, ids are 1..={MAX_SESSION_ID_BYTES}",
                s.len()
            )));
        }
        self.occurred_at.validate("occurred_at")?;
        self.recorded_at.validate("recorded_at")?;
        if let Some(c) = self.min_confidence
            && !(0.0..=1.0).contains(&c)
        {
            return Err(Error::invalid(format!(
                "filter.min_confidence must be in [0, 1], got {c}"
            )));
        }
        Ok(())
    }

    /// True if a memory with `a` matches (the reference the indexed evaluation
    /// must agree with).
    pub fn matches(&self, a: Attributes<'_>) -> bool {
        self.tags
            .iter()
            .all(|c| match (&c.test, a.tags.get(&c.key)) {
                (TagTest::Equals(v), Some(t)) => v == t,
                (TagTest::AnyOf(vs), Some(t)) => vs.contains(t),
                (TagTest::Present, t) => t.is_some(),
                (TagTest::Absent, t) => t.is_none(),
                (TagTest::Equals(_) | TagTest::AnyOf(_), None) => false,
            })
            && (self.session_ids.is_empty() || self.session_ids.iter().any(|s| s == a.session_id))
            && self.occurred_at.contains(a.occurred_at_us)
            && self.recorded_at.contains(a.recorded_at_us)
            && self.min_confidence.is_none_or(|m| a.confidence >= m)
    }
}

/// How similarity is combined with a memory's age and confidence (the default:
/// similarity alone). The similarity is first mapped to a relevance in [0, 1]
/// (cosine: `(1 + s) / 2`; L2: `1 / (1 + d²)`; inner product: the logistic of the
/// dot product), then multiplied by `0.5^(age / half_life)` and
/// `confidence^confidence_weight`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ranking {
    /// Recency half-life (none: no recency factor). Age runs from a memory's
    /// `occurred_at` to the snapshot's commit time (never negative).
    pub half_life: Option<Duration>,
    /// Confidence weight (0: no confidence factor), at most [`MAX_CONFIDENCE_WEIGHT`].
    pub confidence_weight: f32,
}

impl Ranking {
    /// True if ranking is by similarity alone.
    pub fn is_plain(&self) -> bool {
        self.half_life.is_none() && self.confidence_weight == 0.0
    }

    /// Checks the bounds.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=MAX_CONFIDENCE_WEIGHT).contains(&self.confidence_weight) {
            return Err(Error::invalid(format!(
                "ranking.confidence_weight must be in [0, {MAX_CONFIDENCE_WEIGHT}], got {}",
                self.confidence_weight
            )));
        }
        if self.half_life.is_some_and(|h| h.is_zero()) {
            return Err(Error::invalid("ranking.half_life must be positive"));
        }
        Ok(())
    }

    /// The factor `relevance` is multiplied by for a memory of `age_us` and
    /// `confidence`.
    pub fn factor(&self, age_us: i64, confidence: f32) -> f32 {
        let recency = self.half_life.map_or(1.0, |h| {
            let age = age_us.max(0) as f64 / h.as_micros().max(1) as f64;
            0.5f64.powf(age) as f32
        });
        let trust = if self.confidence_weight == 0.0 {
            1.0
        } else {
            confidence.max(0.0).powf(self.confidence_weight)
        };
        recency * trust
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(tags: &BTreeMap<String, String>) -> Attributes<'_> {
        Attributes {
            tags,
            session_id: "s1",
            occurred_at_us: 100,
            recorded_at_us: 200,
            confidence: 0.5,
        }
    }

    #[test]
    fn clauses_are_anded() {
        let tags: BTreeMap<String, String> = [
            ("user".into(), "ann".into()),
            ("kind".into(), "fact".into()),
        ]
        .into();
        let a = attrs(&tags);
        let clause = |key: &str, test| TagClause {
            key: key.into(),
            test,
        };
        let f = |tags| Filter {
            tags,
            ..Default::default()
        };
        assert!(Filter::default().matches(a));
        assert!(f(vec![clause("user", TagTest::Equals("ann".into()))]).matches(a));
        assert!(!f(vec![clause("user", TagTest::Equals("bob".into()))]).matches(a));
        assert!(
            f(vec![clause(
                "user",
                TagTest::AnyOf(vec!["bob".into(), "ann".into()])
            )])
            .matches(a)
        );
        assert!(f(vec![clause("kind", TagTest::Present)]).matches(a));
        assert!(!f(vec![clause("kind", TagTest::Absent)]).matches(a));
        assert!(f(vec![clause("topic", TagTest::Absent)]).matches(a));
        assert!(
            !f(vec![
                clause("kind", TagTest::Present),
                clause("user", TagTest::Equals("bob".into()))
            ])
            .matches(a)
        );
        let time = Filter {
            occurred_at: TimeRange {
                from_us: Some(100),
                until_us: Some(101),
            },
            session_ids: vec!["s1".into()],
            min_confidence: Some(0.5),
            ..Default::default()
        };
        assert!(time.matches(a));
        let later = Filter {
            recorded_at: TimeRange {
                from_us: None,
                until_us: Some(200),
            },
            ..Default::default()
        };
        assert!(!later.matches(a), "half-open: until is excluded");
    }

    #[test]
    fn every_bound_is_checked_and_named() {
        let bad = |f: Filter, words: &str| {
            let e = f.validate().unwrap_err().to_string();
            assert!(e.contains(words), "{e}");
        };
        let clause = |key: String, test| TagClause { key, test };
        bad(
            Filter {
                tags: vec![clause("k".into(), TagTest::Present); 17],
                ..Default::default()
            },
            "filter.tags: 17 clauses",
        );
        bad(
            Filter {
                tags: vec![clause(String::new(), TagTest::Present)],
                ..Default::default()
            },
            "filter.tags[0]",
        );
        bad(
            Filter {
                tags: vec![clause("k".repeat(129), TagTest::Present)],
                ..Default::default()
            },
            "the key must be",
        );
        bad(
            Filter {
                tags: vec![clause("k".into(), TagTest::AnyOf(vec![]))],
                ..Default::default()
            },
            "any_of needs",
        );
        bad(
            Filter {
                tags: vec![clause("k".into(), TagTest::AnyOf(vec!["v".into(); 65]))],
                ..Default::default()
            },
            "any_of needs",
        );
        bad(
            Filter {
                tags: vec![clause("k".into(), TagTest::Equals("v".repeat(8193)))],
                ..Default::default()
            },
            "a value of 8193 bytes",
        );
        bad(
            Filter {
                session_ids: vec!["s".into(); 65],
                ..Default::default()
            },
            "filter.session_ids: 65",
        );
        bad(
            Filter {
                session_ids: vec![String::new()],
                ..Default::default()
            },
            "filter.session_ids",
        );
        bad(
            Filter {
                occurred_at: TimeRange {
                    from_us: Some(5),
                    until_us: Some(5),
                },
                ..Default::default()
            },
            "filter.occurred_at",
        );
        bad(
            Filter {
                recorded_at: TimeRange {
                    from_us: Some(9),
                    until_us: Some(1),
                },
                ..Default::default()
            },
            "filter.recorded_at",
        );
        bad(
            Filter {
                min_confidence: Some(1.5),
                ..Default::default()
            },
            "min_confidence",
        );
        bad(
            Filter {
                min_confidence: Some(f32::NAN),
                ..Default::default()
            },
            "min_confidence",
        );
        let r = Ranking {
            confidence_weight: 17.0,
            ..Default::default()
        };
        assert!(r.validate().is_err());
        let r = Ranking {
            half_life: Some(Duration::ZERO),
            ..Default::default()
        };
        assert!(r.validate().is_err());
    }

    #[test]
    fn ranking_factor_halves_per_half_life() {
        let r = Ranking {
            half_life: Some(Duration::from_secs(10)),
            confidence_weight: 2.0,
        };
        assert!((r.factor(0, 1.0) - 1.0).abs() < 1e-6);
        assert!((r.factor(10_000_000, 1.0) - 0.5).abs() < 1e-6);
        assert!((r.factor(20_000_000, 0.5) - 0.0625).abs() < 1e-6);
        assert!(
            (r.factor(-5, 1.0) - 1.0).abs() < 1e-6,
            "no boost from the future"
        );
        assert_eq!(Ranking::default().factor(123, 0.1), 1.0);
    }
}
