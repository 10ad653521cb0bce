use mnemo_engine::{Engine, EngineConfig, Observation};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::path::Path;

/// An engine on `dir` with small, test-friendly settings.
pub fn open(dir: &Path) -> Engine {
    Engine::open(config(dir)).unwrap()
}

pub fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.index_threads = 2;
    c.log.durability = mnemo_engine::Durability::Buffered;
    c
}

pub fn random_vec(rng: &mut StdRng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

pub fn obs(content: impl Into<String>, embedding: Vec<f32>) -> Observation {
    Observation {
        content: content.into(),
        embedding,
        ..Default::default()
    }
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}
