//! INDEXED notifications of one session stream, coalesced into a watermark: an
//! INDEXED ack for sequence N says every observation of the session up to N is in
//! the HNSW graph. The stream keeps two numbers (the highest sequence ACCEPTED on
//! it and the highest announced INDEXED), not an entry per observation, so a paused
//! or slow reader costs nothing however much it sends; on resume it gets one ack.

use mnemo_engine::{Engine, Lsn};
use std::sync::Arc;

use crate::pb;

/// See the module docs.
pub(crate) struct IndexedWatch {
    engine: Arc<Engine>,
    space: String,
    session: String,
    accepted: u64,
    announced: u64,
}

impl IndexedWatch {
    pub(crate) fn new(engine: Arc<Engine>, space: String, session: String) -> Self {
        IndexedWatch {
            engine,
            space,
            session,
            accepted: 0,
            announced: 0,
        }
    }

    /// Sequence `seq` was ACCEPTED.
    pub(crate) fn accepted(&mut self, seq: u64) {
        self.accepted = self.accepted.max(seq);
    }

    /// True while an accepted sequence is not yet announced.
    pub(crate) fn pending(&self) -> bool {
        self.accepted > self.announced
    }

    /// Sequence `seq` was announced.
    pub(crate) fn announced(&mut self, seq: u64) {
        self.announced = self.announced.max(seq);
    }

    fn lsn(&self, seq: u64) -> Option<Lsn> {
        self.engine
            .session_lsn(&self.space, &self.session, seq)
            .ok()
            .flatten()
    }

    /// Resolves once the next sequence to announce is in the graph, with the
    /// INDEXED ack for the highest sequence indexed by then. Cancel-safe (it only
    /// reads); a dropped space never resolves.
    pub(crate) fn next(&self) -> impl Future<Output = pb::Ack> + Send + 'static {
        let first = self.announced + 1;
        let wait = self
            .lsn(first)
            .and_then(|lsn| self.engine.indexed(&self.space, lsn).ok());
        let me = IndexedWatch {
            engine: Arc::clone(&self.engine),
            space: self.space.clone(),
            session: self.session.clone(),
            accepted: self.accepted,
            announced: self.announced,
        };
        async move {
            let Some(wait) = wait else {
                return futures::future::pending().await;
            };
            if wait.await.is_err() {
                return futures::future::pending().await;
            }
            let watermark = me.engine.indexed_lsn(&me.space).unwrap_or(0);
            // LSNs grow with sequence numbers: the last sequence at or below the
            // watermark, by bisection over `first..=accepted`.
            let (mut lo, mut hi) = (first, me.accepted);
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                if me.lsn(mid).is_some_and(|l| l <= watermark) {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            pb::Ack {
                sequence: lo,
                lsn: me.lsn(lo).unwrap_or(0),
                status: pb::AckStatus::Indexed as i32,
                ..Default::default()
            }
        }
    }
}
