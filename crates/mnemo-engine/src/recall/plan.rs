//! How a recall finds its candidates, and how it ranks them.
//!
//! - **No filter**: the fresh tier is scanned (8-bit codes), *then* the warm tier
//!   (1-bit codes of the nearest lists; its best estimates re-scored exactly from
//!   the log), *then* the graph is searched with `lsn ≤ snapshot`: the order that
//!   leaves no committed record between the tiers, since a row enters a tier before
//!   it leaves the one before.
//! - **A filter** is first turned into the exact set of matching LSNs at the
//!   snapshot (posting lists and columns, `space/attrs/`). Up to
//!   `recall_exact_limit` matches, every one is scored: from its vector in memory
//!   (fresh tier or graph), or exactly from the log (a warm row): the true top k of
//!   the matches, however few they are. Above it,
//!   the tiers are searched with the set as their predicate, and if the graph comes
//!   back short (a filtered HNSW search starves when most of the graph fails the
//!   predicate), every match is scored instead.
//! - **Ranking**: candidates are ordered by approximate score (similarity, or its
//!   relevance times the recency and confidence factors), the best are re-scored
//!   exactly from the log, and the final order is by the exact combined score. With
//!   a ranking the pool is [`RANKING_WIDEN`] times wider, and wider again when a
//!   candidate left out could still have beaten the k-th (its relevance bounds its
//!   combined score from above).

use roaring::RoaringTreemap;

use crate::error::Result;
use crate::index::score;
use crate::index::warm::{self, WarmCue, WarmTier};
use crate::log::Log;
use crate::space::Space;
use crate::types::{Filter, Lsn, Metric, Ranking, now_us};

/// Matches from which scoring every match is split among threads.
const PARALLEL_MATCHES: usize = 2048;
/// How much wider the candidate pool is when a ranking weighs similarity.
const RANKING_WIDEN: usize = 4;
/// Largest candidate pool a ranking widens to.
const RANKING_POOL_MAX: usize = 16_384;

/// One recall's view of its space.
pub(crate) struct Plan<'a> {
    pub(crate) space: &'a Space,
    pub(crate) cue: &'a [f32],
    pub(crate) prepared: &'a [f32],
    pub(crate) snapshot: Lsn,
    pub(crate) filter: &'a Filter,
    pub(crate) ranking: &'a Ranking,
    /// Matches up to which a filtered recall scores every match exactly.
    pub(crate) exact_limit: u64,
    /// Where vectors are read back for exact scores.
    pub(crate) log: &'a dyn Log,
}

/// A candidate: its LSN and approximate similarity.
type Candidate = (Lsn, f32);

impl Plan<'_> {
    fn metric(&self) -> Metric {
        self.space.info.config.metric
    }

    /// The LSNs matching the filter at the snapshot; `None` without a filter.
    pub(crate) fn select(&self) -> Option<RoaringTreemap> {
        (!self.filter.is_empty()).then(|| self.space.select(self.filter, self.snapshot))
    }

    /// Candidates for the best `pool`, approximately scored, one per LSN.
    pub(crate) fn candidates(
        &self,
        selection: Option<&RoaringTreemap>,
        pool: usize,
        want: usize,
    ) -> Result<Vec<Candidate>> {
        match selection {
            Some(sel) if sel.len() <= self.exact_limit => self.every_match(sel),
            Some(sel) => {
                let found = self.search(pool, want, Some(sel))?;
                // The graph starved under the filter: score every match instead.
                if found.len() < want.min(sel.len() as usize) {
                    return self.every_match(sel);
                }
                Ok(found)
            }
            None => self.search(pool, want, None),
        }
    }

    /// The fresh tier, then the graph, each asked for `pool`, with `selection` as
    /// their predicate.
    fn search(
        &self,
        pool: usize,
        want: usize,
        selection: Option<&RoaringTreemap>,
    ) -> Result<Vec<Candidate>> {
        let (space, snapshot) = (self.space, self.snapshot);
        // A selection holds only what the snapshot sees; without one, each candidate
        // is checked (lost, dead, expired) when anything can be hidden.
        let checks = space.hidden_checks();
        let outside = |lsn: Lsn| match selection {
            Some(s) => !s.contains(lsn),
            None => !checks.none() && space.hidden(lsn, snapshot, checks),
        };
        // Order matters: fresh, warm, then the graph (see the module docs).
        let fresh = space.fresh.scan(self.prepared, pool, snapshot, &outside);
        let warm = self.warm_candidates(pool, &outside)?;
        let available = usize::try_from(snapshot).unwrap_or(usize::MAX);
        let visible = |lsn: Lsn| lsn <= snapshot && !outside(lsn);
        // Plain similarity: the graph's best `want` and a few (the fresh tier gives
        // the margin); with a ranking, the whole pool from both.
        let plain = self.ranking.is_plain();
        let target = if plain { want } else { pool };
        let mut ask = if plain { want + 8 } else { pool };
        loop {
            let hits = space.hnsw.search(self.cue, ask, &visible)?;
            let short = hits.len() < ask;
            let mut merged: Vec<Candidate> = fresh
                .iter()
                .chain(&warm)
                .copied()
                .chain(
                    hits.into_iter()
                        .map(|(lsn, d)| (lsn, score::from_distance(self.metric(), d))),
                )
                .collect();
            // One entry per LSN (a row can be in both tiers), its best approximate score.
            merged.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
            merged.dedup_by_key(|c| c.0);
            // The graph may come back short (usearch trap): ask for more until the
            // pool is full or the graph is exhausted.
            let cap = available.min(crate::MAX_RECALL_K * 4);
            if merged.len() >= target.min(available) || !short || ask >= cap {
                return Ok(merged);
            }
            ask = (ask * 4).min(cap.max(1));
        }
    }

    /// The warm tier's best `pool` rows for the cue, scored exactly: its 1-bit
    /// estimates pick [`WarmTier::rescore_count`] candidates from the nearest lists
    /// (more lists when `outside` turns most away), read back from the log.
    fn warm_candidates(
        &self,
        pool: usize,
        outside: &(dyn Fn(Lsn) -> bool + Sync),
    ) -> Result<Vec<Candidate>> {
        let warm = &self.space.warm;
        if warm.len() == 0 {
            return Ok(Vec::new());
        }
        let mut cue = WarmCue::new(self.prepared);
        let want = WarmTier::rescore_count(pool);
        let mut probe = if warm.len() <= warm::SCAN_ALL_ROWS {
            warm::LISTS
        } else {
            WarmTier::default_probe(pool)
        };
        let mut found = warm.scan(&mut cue, want, probe, self.snapshot, outside);
        while found.len() < want && probe < warm::LISTS {
            probe = (probe * 4).min(warm::LISTS);
            found = warm.scan(&mut cue, want, probe, self.snapshot, outside);
        }
        let mut exact = found
            .into_iter()
            .map(|(lsn, _)| Ok((lsn, self.exact_score(lsn)?)))
            .collect::<Result<Vec<Candidate>>>()?;
        exact.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        exact.truncate(pool);
        Ok(exact)
    }

    /// The exact similarity of `lsn`, from its embedding in the log.
    fn exact_score(&self, lsn: Lsn) -> Result<f32> {
        // The embedding alone: a memory's content and tags can be 70 KiB.
        let embedding = self.space.read_embedding(self.log, lsn)?;
        let metric = self.metric();
        Ok(score::score(
            metric,
            self.prepared,
            &score::prepare(metric, &embedding),
        ))
    }

    /// Every LSN of `selection`, scored: from the fresh tier's 8-bit codes, else
    /// the graph's stored vector (about 1.5 µs a memory at 768-d, most of it the
    /// graph's lookup), else (a warm row) exactly from the log. Thousands of
    /// matches are split among the cores: a recall waits for its own scoring.
    fn every_match(&self, selection: &RoaringTreemap) -> Result<Vec<Candidate>> {
        let lsns: Vec<Lsn> = selection.iter().collect();
        let codes = score::quantize(self.prepared);
        // Fresh, then graph, then the log: a row that left the fresh tier is in the
        // warm tier or the graph, and the log has every one.
        let score = |part: &[Lsn]| -> Result<Vec<Candidate>> {
            let mut found = Vec::with_capacity(part.len());
            let mut elsewhere = Vec::new();
            self.space
                .fresh
                .score_lsns(part, &codes, &mut found, &mut elsewhere);
            let in_warm =
                self.space
                    .hnsw
                    .score_lsns(&elsewhere, self.prepared, self.metric(), &mut found);
            for lsn in in_warm {
                found.push((lsn, self.exact_score(lsn)?));
            }
            Ok(found)
        };
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let parts = (lsns.len() / PARALLEL_MATCHES).clamp(1, cores.min(4));
        if parts == 1 {
            return score(&lsns);
        }
        let per_part = lsns.len().div_ceil(parts);
        std::thread::scope(|scope| {
            let mut chunks = lsns.chunks(per_part);
            let first = chunks.next().unwrap_or_default();
            let others: Vec<_> = chunks.map(|c| scope.spawn(move || score(c))).collect();
            let mut found = score(first)?;
            for other in others {
                // Scoring does not panic (bounds come from its own rows); if it did,
                // the panic is the caller's, as in one thread.
                match other.join() {
                    Ok(more) => found.extend(more?),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            Ok(found)
        })
    }

    /// The best `want` of `candidates`: the best `pool` by approximate score are
    /// re-scored exactly from the log (embedding only), then ordered by exact
    /// score, or by the combined score of the ranking.
    pub(crate) fn rescore(
        &self,
        mut candidates: Vec<Candidate>,
        pool: usize,
        want: usize,
    ) -> Result<Vec<Candidate>> {
        let weigh = self.weigher();
        candidates.sort_by(|a, b| {
            weigh
                .key(b.0, b.1)
                .total_cmp(&weigh.key(a.0, a.1))
                .then(a.0.cmp(&b.0))
        });
        candidates.truncate(pool);
        let mut scored = Vec::with_capacity(candidates.len());
        for (lsn, _) in candidates {
            scored.push((lsn, weigh.key(lsn, self.exact_score(lsn)?)));
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(want);
        Ok(scored)
    }

    /// The pool a recall of `want` considers.
    pub(crate) fn pool(&self, want: usize, margin: usize) -> usize {
        if self.ranking.is_plain() {
            want + margin
        } else {
            ((want + margin) * RANKING_WIDEN).min(RANKING_POOL_MAX)
        }
    }

    /// The lowest relevance among `candidates`: with a ranking, a memory left out
    /// of a full pool has at most this relevance, and so at most this combined
    /// score (the factors are at most 1).
    pub(crate) fn floor(&self, candidates: &[Candidate]) -> f32 {
        candidates
            .iter()
            .map(|c| relevance(self.metric(), c.1))
            .fold(f32::INFINITY, f32::min)
    }

    /// With a ranking: true if a memory outside a full `pool` (every one at most
    /// `floor`) could still beat the `want`-th of `ranked`.
    pub(crate) fn needs_wider(
        &self,
        full: bool,
        floor: f32,
        ranked: &[Candidate],
        pool: usize,
        want: usize,
    ) -> bool {
        if self.ranking.is_plain() || !full || pool >= RANKING_POOL_MAX {
            return false;
        }
        ranked.len() < want || ranked.last().is_some_and(|k| floor > k.1)
    }

    /// Wider than `pool`.
    pub(crate) fn widen(pool: usize) -> usize {
        (pool * RANKING_WIDEN).min(RANKING_POOL_MAX)
    }

    fn weigher(&self) -> Weigher<'_> {
        let now = if self.ranking.is_plain() {
            0
        } else {
            self.space.commit_time(self.snapshot).unwrap_or_else(now_us)
        };
        Weigher { plan: self, now }
    }
}

/// Turns a similarity into the score results are ordered by.
struct Weigher<'a> {
    plan: &'a Plan<'a>,
    /// The snapshot's commit time (µs), for ages.
    now: i64,
}

impl Weigher<'_> {
    fn key(&self, lsn: Lsn, similarity: f32) -> f32 {
        let ranking = self.plan.ranking;
        if ranking.is_plain() {
            return similarity;
        }
        let (occurred, confidence) = self
            .plan
            .space
            .attrs
            .read()
            .time_and_confidence(lsn)
            .unwrap_or((self.now, 1.0));
        relevance(self.plan.metric(), similarity) * ranking.factor(self.now - occurred, confidence)
    }
}

/// A similarity as a relevance in [0, 1], monotone in it.
pub(crate) fn relevance(metric: Metric, similarity: f32) -> f32 {
    match metric {
        Metric::Cosine => ((1.0 + similarity) / 2.0).clamp(0.0, 1.0),
        // The L2 score is the negated squared distance.
        Metric::L2 => 1.0 / (1.0 - similarity.min(0.0)),
        Metric::InnerProduct => 1.0 / (1.0 + (-similarity).exp()),
    }
}
