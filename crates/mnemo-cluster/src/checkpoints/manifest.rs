//! Manifests and records objects: names, CRCs, reading the newest manifest.

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::Checkpoints;

/// A checkpoint of one space: every record up to `lsn`, in `objects`, covering
/// every message of the partition's stream up to `stream_seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) space: u32,
    pub(crate) partition: u32,
    pub(crate) lsn: u64,
    pub(crate) stream_seq: u64,
    pub(crate) objects: Vec<ObjectRef>,
    pub(crate) written_by: String,
}

/// One records object: frames of LSNs `from..=to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ObjectRef {
    pub(crate) path: String,
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) bytes: u64,
    pub(crate) crc32c: u32,
}

/// What a manifest object holds: the manifest and the CRC of its JSON.
#[derive(Serialize, Deserialize)]
struct Sealed {
    manifest: Manifest,
    crc32c: u32,
}

/// Why a checkpoint could not be read or written.
pub(crate) type CheckpointResult<T> = Result<T, String>;

impl Manifest {
    /// The empty checkpoint every space starts from.
    pub(crate) fn empty(space: u32, partition: u32) -> Manifest {
        Manifest {
            space,
            partition,
            lsn: 0,
            stream_seq: 0,
            objects: Vec::new(),
            written_by: String::new(),
        }
    }
}

impl Checkpoints {
    /// The newest manifest of `space` in the store, CRC-checked; `None` if it has
    /// none.
    pub(crate) async fn read_newest(&self, space: u32) -> CheckpointResult<Option<Manifest>> {
        let dir = self.space_dir(space, "manifests");
        let listed: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| format!("listing {dir}: {e}"))?;
        let Some(newest) = listed.iter().map(|m| &m.location).max() else {
            return Ok(None);
        };
        let bytes = self.get(newest).await?;
        let sealed: Sealed =
            serde_json::from_slice(&bytes).map_err(|e| format!("manifest {newest}: {e}"))?;
        let json = serde_json::to_vec(&sealed.manifest).map_err(|e| e.to_string())?;
        if crc32c::crc32c(&json) != sealed.crc32c {
            return Err(format!("manifest {newest}: CRC mismatch"));
        }
        if sealed.manifest.space != space {
            return Err(format!(
                "manifest {newest} is of space {}",
                sealed.manifest.space
            ));
        }
        Ok(Some(sealed.manifest))
    }

    /// The bytes of a records object, CRC-checked against the manifest.
    pub(crate) async fn read_object(&self, object: &ObjectRef) -> CheckpointResult<bytes::Bytes> {
        let bytes = self.get(&Path::from(object.path.as_str())).await?;
        if bytes.len() as u64 != object.bytes || crc32c::crc32c(&bytes) != object.crc32c {
            return Err(format!(
                "records object {}: size or CRC mismatch",
                object.path
            ));
        }
        Ok(bytes)
    }

    /// Writes a new records object (never overwriting one).
    pub(crate) async fn write_object(
        &self,
        space: u32,
        from: u64,
        to: u64,
        node: &str,
        frames: Vec<u8>,
    ) -> CheckpointResult<ObjectRef> {
        let path = self
            .space_dir(space, "records")
            .join(format!("{from:020}-{to:020}-{node}.frames"));
        let object = ObjectRef {
            path: path.to_string(),
            from,
            to,
            bytes: frames.len() as u64,
            crc32c: crc32c::crc32c(&frames),
        };
        self.create(&path, frames).await?;
        Ok(object)
    }

    /// Writes `manifest` (last: the checkpoint exists once it does).
    pub(crate) async fn write_manifest(&self, manifest: &Manifest) -> CheckpointResult<()> {
        let json = serde_json::to_vec(manifest).map_err(|e| e.to_string())?;
        let sealed = Sealed {
            manifest: manifest.clone(),
            crc32c: crc32c::crc32c(&json),
        };
        let bytes = serde_json::to_vec(&sealed).map_err(|e| e.to_string())?;
        let path = self.space_dir(manifest.space, "manifests").join(format!(
            "{:020}-{:020}-{}.json",
            manifest.lsn, manifest.stream_seq, manifest.written_by
        ));
        self.create(&path, bytes).await
    }

    async fn create(&self, path: &Path, bytes: Vec<u8>) -> CheckpointResult<()> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.store
            .put_opts(path, PutPayload::from(bytes), opts)
            .await
            .map(|_| ())
            .map_err(|e| format!("writing {path}: {e}"))
    }

    async fn get(&self, path: &Path) -> CheckpointResult<bytes::Bytes> {
        let got = self
            .store
            .get(path)
            .await
            .map_err(|e| format!("reading {path}: {e}"))?;
        got.bytes()
            .await
            .map_err(|e| format!("reading {path}: {e}"))
    }
}
