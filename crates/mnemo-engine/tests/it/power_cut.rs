//! Durability proven on a simulated disk that keeps only what was synced
//! (`mnemo_engine::io::SimFs`): appends, segment rotations, checkpoints and power
//! cuts interleave at random; after every cut the engine reopens on what survived,
//! and every record that was visible before the cut is there, unchanged, while
//! nothing that was never written whole appears. Removing the log's `fdatasync` or
//! the directory sync after a segment is created makes this test fail.
use mnemo_engine::io::{FileSystem, SimFs};
use mnemo_engine::{Durability, Engine, EngineConfig, Observation, SpaceConfig};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

const DIM: u32 = 4;

#[derive(Debug, Clone)]
enum Op {
    /// Observe this many, waiting for every ack.
    Observe(u8),
    /// Submit this many, then cut the power before their acks are awaited.
    ObserveAndCut(u8),
    Checkpoint,
    PowerCut,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..60).prop_map(Op::Observe),
        2 => (1u8..60).prop_map(Op::ObserveAndCut),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::PowerCut),
    ]
}

fn config() -> EngineConfig {
    let mut c = EngineConfig::new("/data");
    c.index_threads = 1;
    c.log.durability = Durability::Fsync;
    // Rotations every few dozen records.
    c.log.segment_bytes = 4096;
    c.log.min_free_bytes = 0;
    c.checkpoint_interval_s = 3600;
    c
}

fn open(fs: &SimFs) -> Engine {
    Engine::open_in(config(), Arc::new(fs.clone()) as Arc<dyn FileSystem>).unwrap()
}

/// What every observation with this number carries.
fn observation(n: u64) -> Observation {
    Observation {
        content: format!("observation {n}"),
        embedding: (0..DIM).map(|d| (n * 7 + u64::from(d)) as f32).collect(),
        ..Default::default()
    }
}

/// Every stored record (LSN → content) as the reopened engine serves it; checks
/// each is whole and is one of the observations sent.
fn stored(engine: &Engine, sent: u64) -> BTreeMap<u64, String> {
    let upto = engine.snapshot("s").unwrap();
    let all = engine.export("s", 0, upto, usize::MAX, None).unwrap().0;
    assert_eq!(all.len() as u64, upto, "LSNs are dense");
    all.into_iter()
        .map(|m| {
            let n: u64 = m
                .content
                .strip_prefix("observation ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a record no one sent: {:?}", m.content));
            assert!(n < sent, "observation {n} was never sent");
            assert_eq!(m.embedding, observation(n).embedding, "a torn record");
            (m.lsn, m.content)
        })
        .collect()
}

fn run(ops: &[Op]) {
    let mut fs = SimFs::new();
    let mut engine = open(&fs);
    engine.create_space("s", SpaceConfig::new(DIM)).unwrap();
    // LSN → content of every record known visible (so durable); the next number.
    let mut durable: BTreeMap<u64, String> = BTreeMap::new();
    let mut sent = 0u64;
    let cut = |engine: Engine, fs: &mut SimFs, durable: &mut BTreeMap<u64, String>, sent| {
        // Everything committed now is durable: it must survive this cut.
        let visible = engine.snapshot("s").unwrap();
        let survived = fs.power_cut();
        drop(engine); // goes on writing into a disk that is gone
        *fs = survived;
        let engine = open(fs);
        let found = stored(&engine, sent);
        for (lsn, content) in durable.iter() {
            assert_eq!(
                found.get(lsn),
                Some(content),
                "LSN {lsn} was visible and is lost"
            );
        }
        assert!(found.len() as u64 >= visible, "{} < {visible}", found.len());
        *durable = found;
        engine
    };
    for op in ops {
        match op {
            Op::Observe(n) => {
                let tickets: Vec<_> = (0..*n)
                    .map(|_| {
                        sent += 1;
                        engine.observe("s", observation(sent - 1)).unwrap()
                    })
                    .collect();
                for t in tickets {
                    let done = t.wait().unwrap();
                    let m = engine.get("s", done.lsn).unwrap();
                    durable.insert(done.lsn, m.content);
                }
            }
            Op::ObserveAndCut(n) => {
                let tickets: Vec<_> = (0..*n)
                    .map(|_| {
                        sent += 1;
                        engine.observe("s", observation(sent - 1)).unwrap()
                    })
                    .collect();
                let committed = engine.snapshot("s").unwrap();
                for lsn in durable.len() as u64 + 1..=committed {
                    durable.insert(lsn, engine.get("s", lsn).unwrap().content);
                }
                engine = cut(engine, &mut fs, &mut durable, sent);
                drop(tickets);
            }
            Op::Checkpoint => {
                engine.checkpoint("s").unwrap();
            }
            Op::PowerCut => {
                engine = cut(engine, &mut fs, &mut durable, sent);
            }
        }
    }
    engine = cut(engine, &mut fs, &mut durable, sent);
    engine.close().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn every_visible_record_survives_any_power_cut(ops in prop::collection::vec(op(), 1..10)) {
        run(&ops);
    }
}

/// A space created (and acknowledged) survives a power cut at once.
#[test]
fn a_created_space_survives_a_power_cut() {
    let fs = SimFs::new();
    let engine = open(&fs);
    engine.create_space("s", SpaceConfig::new(DIM)).unwrap();
    let after = fs.power_cut();
    drop(engine);
    let engine = open(&after);
    assert_eq!(engine.list_spaces().len(), 1);
    assert!(after.exists(Path::new("/data/catalog.json")));
    engine.close().unwrap();
}
