//! Serializer for the container: the one implementation the trainer, the tests and the tools
//! use to produce `.q8b` files. It writes structure only; `builder.rs` decides what goes in.

use alloc::string::String;
use alloc::vec::Vec;

use super::checksum::xxh64;
use super::reader::header_checksum;
use super::*;

struct PendingTensor {
    name: String,
    dtype: DType,
    dims: Vec<u64>,
    bytes: Vec<u8>,
}

/// Collects metadata and tensors, then lays them out per the spec.
#[derive(Default)]
pub struct FileWriter {
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<PendingTensor>,
    /// Minor version written to the header (0 unless raised by the caller).
    version_minor: u16,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl FileWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The minor version this writer will declare.
    pub fn minor(&self) -> u16 {
        self.version_minor
    }

    /// The minor format version to write: the lowest one whose features the file uses
    /// (`builder.rs` raises it to 1 for int8 attention, 2 for per-row inputs). At most
    /// [`VERSION_MINOR`].
    pub fn version_minor(&mut self, minor: u16) {
        assert!(minor <= VERSION_MINOR, "format minor version {minor} is newer than this writer ({VERSION_MINOR})");
        self.version_minor = minor;
    }

    /// Adds (or replaces) a metadata entry.
    pub fn metadata(&mut self, key: &str, value: MetaValue) {
        if let Some(slot) = self.metadata.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value;
        } else {
            self.metadata.push((key.into(), value));
        }
    }

    /// Adds a tensor; `bytes` must be its little-endian contents (size checked by `to_bytes`).
    pub fn tensor(&mut self, name: &str, dtype: DType, dims: &[u64], bytes: Vec<u8>) {
        self.tensors.push(PendingTensor { name: name.into(), dtype, dims: dims.to_vec(), bytes });
    }

    pub fn tensor_f32(&mut self, name: &str, dims: &[u64], values: &[f32]) {
        self.tensor(name, DType::F32, dims, bytemuck::cast_slice(values).to_vec());
    }

    pub fn tensor_i32(&mut self, name: &str, dims: &[u64], values: &[i32]) {
        self.tensor(name, DType::I32, dims, bytemuck::cast_slice(values).to_vec());
    }

    pub fn tensor_u32(&mut self, name: &str, dims: &[u64], values: &[u32]) {
        self.tensor(name, DType::U32, dims, bytemuck::cast_slice(values).to_vec());
    }

    /// Serializes the file. Panics only on programmer error (a tensor whose byte length
    /// disagrees with its dtype and shape), which the builder never produces.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut meta = Vec::new();
        for (key, value) in &self.metadata {
            put_str(&mut meta, key);
            meta.extend_from_slice(&(value.meta_type() as u32).to_le_bytes());
            match value {
                MetaValue::U32(v) => meta.extend_from_slice(&v.to_le_bytes()),
                MetaValue::I32(v) => meta.extend_from_slice(&v.to_le_bytes()),
                MetaValue::U64(v) => meta.extend_from_slice(&v.to_le_bytes()),
                MetaValue::F32(v) => meta.extend_from_slice(&v.to_le_bytes()),
                MetaValue::Bool(v) => meta.push(*v as u8),
                MetaValue::Str(s) => put_str(&mut meta, s),
                MetaValue::StrArray(items) => {
                    meta.extend_from_slice(&(items.len() as u32).to_le_bytes());
                    for s in items {
                        put_str(&mut meta, s);
                    }
                }
            }
        }

        let mut dir = Vec::new();
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let expected = t.dtype.byte_size(&t.dims).expect("tensor shape overflows");
            assert_eq!(expected, t.bytes.len() as u64, "tensor {} has {} bytes, its shape needs {expected}", t.name, t.bytes.len());
            offset = align_up(offset).unwrap();
            offsets.push(offset);
            put_str(&mut dir, &t.name);
            dir.extend_from_slice(&(t.dtype as u32).to_le_bytes());
            dir.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                dir.extend_from_slice(&d.to_le_bytes());
            }
            dir.extend_from_slice(&offset.to_le_bytes());
            dir.extend_from_slice(&(t.bytes.len() as u64).to_le_bytes());
            offset += t.bytes.len() as u64;
        }
        let data_size = offset;

        let metadata_offset = HEADER_SIZE as u64;
        let dir_offset = metadata_offset + meta.len() as u64;
        let dir_end = dir_offset + dir.len() as u64;
        let data_offset = align_up(dir_end).unwrap();

        let mut out = Vec::with_capacity((data_offset + data_size) as usize);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION_MAJOR.to_le_bytes());
        out.extend_from_slice(&self.version_minor.to_le_bytes());
        out.extend_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // flags
        out.extend_from_slice(&(ALIGNMENT as u32).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u32).to_le_bytes());
        for v in [metadata_offset, meta.len() as u64, dir_offset, dir.len() as u64, data_offset, data_size, 0, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.resize(HEADER_SIZE, 0);
        out.extend_from_slice(&meta);
        out.extend_from_slice(&dir);
        out.resize(data_offset as usize, 0);
        for (t, off) in self.tensors.iter().zip(offsets) {
            out.resize((data_offset + off) as usize, 0);
            out.extend_from_slice(&t.bytes);
        }
        reseal(&mut out);
        out
    }
}

/// Recomputes both checksums of a serialized file in place (also used by tests that hand-craft
/// malformed files, so each one is rejected for the rule it breaks rather than its checksum).
/// Does nothing if the header's data_offset is out of range.
pub fn reseal(file: &mut [u8]) {
    if file.len() < HEADER_SIZE {
        return;
    }
    let data_offset = u64::from_le_bytes(file[64..72].try_into().unwrap());
    let Ok(data_offset) = usize::try_from(data_offset) else { return };
    if data_offset > file.len() || data_offset < HEADER_SIZE {
        return;
    }
    let payload = xxh64(&file[data_offset..]);
    file[PAYLOAD_CHECKSUM_FIELD].copy_from_slice(&payload.to_le_bytes());
    let header = header_checksum(&file[..data_offset]);
    file[HEADER_CHECKSUM_FIELD].copy_from_slice(&header.to_le_bytes());
}
