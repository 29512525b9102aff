//! Validating parser of the container over `&[u8]`: no I/O, checked arithmetic everywhere, a
//! specific [`Status`] per rejection, and no allocation sized by a number read from the file
//! (everything allocated is bounded by bytes actually present).
//!
//! This layer checks structure only (header, sections, metadata encoding, tensor directory,
//! alignment, holes, checksums). What the tensors must be for a BERT model is `model.rs`'s job.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use super::checksum::Xxh64;
use super::*;
use crate::error::{bail, Result, Status};

/// One tensor directory entry, validated against the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    pub dims: Vec<u64>,
    /// Absolute byte range in the file.
    pub range: Range<usize>,
}

/// Everything the header, metadata section and tensor directory say, after validation.
#[derive(Debug, Clone)]
pub struct FileIndex {
    pub version_major: u16,
    pub version_minor: u16,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    /// Indices into `tensors` sorted by name, for lookups by binary search (a map would hold a
    /// second copy of every name, and its own code, on a microcontroller).
    pub tensors_by_name: Vec<u32>,
    pub data_range: Range<usize>,
    pub header_checksum: u64,
    pub payload_checksum: u64,
}

/// Little-endian cursor over one section; every read is bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    section: &'static str,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8], section: &'static str) -> Self {
        Cursor { bytes, pos: 0, section }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, status: Status, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            bail!(
                status,
                "{} section: {what} needs {n} bytes at offset {} but only {} remain",
                self.section,
                self.pos,
                self.remaining()
            );
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self, status: Status, what: &str) -> Result<u32> {
        let b = self.take(4, status, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, status: Status, what: &str) -> Result<u64> {
        let b = self.take(8, status, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// u32 length + UTF-8 bytes.
    fn string(&mut self, max_len: usize, status: Status, what: &str) -> Result<String> {
        let len = self.u32(status, what)? as usize;
        if len > max_len {
            bail!(Status::BadString, "{} section: {what} length {len} exceeds the limit {max_len}", self.section);
        }
        let b = self.take(len, status, what)?;
        let Ok(text) = core::str::from_utf8(b) else {
            bail!(Status::BadString, "{} section: {what} is not valid UTF-8", self.section);
        };
        // Sized by the file (up to 1 MiB): fallible, like every file-driven allocation.
        let mut s = String::new();
        if s.try_reserve_exact(len).is_err() {
            bail!(Status::OutOfMemory, "cannot allocate {len} bytes for {what}");
        }
        s.push_str(text);
        Ok(s)
    }
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// A name: non-empty, at most MAX_NAME_LEN bytes, printable ASCII without spaces.
fn check_name(name: &str, section: &str) -> Result<()> {
    if name.is_empty() || !name.bytes().all(|c| c.is_ascii_graphic()) {
        bail!(Status::BadString, "{section} section: name {name:?} must be non-empty printable ASCII without spaces");
    }
    Ok(())
}

/// Header checksum: XXH64 of bytes [0, data_offset) with the checksum field itself read as zeros.
pub fn header_checksum(bytes_before_data: &[u8]) -> u64 {
    let mut h = Xxh64::new();
    h.update(&bytes_before_data[..HEADER_CHECKSUM_FIELD.start]);
    h.update(&[0u8; 8]);
    h.update(&bytes_before_data[HEADER_CHECKSUM_FIELD.end..]);
    h.digest()
}

impl FileIndex {
    /// Parses and validates the container structure. `verify_payload` additionally hashes the
    /// whole data section (O(file size)); without it parsing costs O(header + directory) only.
    pub fn parse(file: &[u8], verify_payload: bool) -> Result<FileIndex> {
        if file.len() < HEADER_SIZE {
            bail!(Status::FileTooShort, "file has {} bytes, the fixed header alone is {HEADER_SIZE}", file.len());
        }
        if file[..8] != MAGIC {
            bail!(Status::BadMagic, "first bytes are {:02x?}, expected {:02x?}", &file[..8], MAGIC);
        }
        let version_major = le_u16(file, 8);
        let version_minor = le_u16(file, 10);
        if version_major != VERSION_MAJOR || version_minor > VERSION_MINOR {
            bail!(
                Status::UnsupportedVersion,
                "file format version {version_major}.{version_minor}; this library reads {VERSION_MAJOR}.0 to {VERSION_MAJOR}.{VERSION_MINOR}"
            );
        }
        let header_size = le_u32(file, 12);
        let flags = le_u32(file, 16);
        let alignment = le_u32(file, 20);
        if header_size as usize != HEADER_SIZE {
            bail!(Status::BadHeader, "header_size is {header_size}, must be {HEADER_SIZE}");
        }
        if flags != 0 {
            bail!(Status::BadHeader, "header flags 0x{flags:x} set; no flags are defined in version 1");
        }
        if alignment as usize != ALIGNMENT {
            bail!(Status::BadHeader, "alignment is {alignment}, must be {ALIGNMENT}");
        }
        if file[96..HEADER_SIZE].iter().any(|&b| b != 0) {
            bail!(Status::BadHeader, "reserved header bytes 96..128 are not zero");
        }
        let metadata_count = le_u32(file, header_at::METADATA_COUNT) as usize;
        let tensor_count = le_u32(file, header_at::TENSOR_COUNT) as usize;
        let metadata_offset = le_u64(file, 32);
        let metadata_size = le_u64(file, header_at::METADATA_SIZE);
        let dir_offset = le_u64(file, header_at::DIRECTORY_OFFSET);
        let dir_size = le_u64(file, header_at::DIRECTORY_SIZE);
        let data_offset = le_u64(file, 64);
        let data_size = le_u64(file, 72);
        let stored_header_checksum = le_u64(file, 80);
        let payload_checksum = le_u64(file, 88);

        // Sections are contiguous, in order, and end exactly at the end of the file.
        let file_len = file.len() as u64;
        if metadata_offset != HEADER_SIZE as u64 {
            bail!(Status::SectionOutOfBounds, "metadata_offset is {metadata_offset}, must be {HEADER_SIZE}");
        }
        let metadata_end = metadata_offset.checked_add(metadata_size);
        if metadata_end != Some(dir_offset) {
            bail!(Status::SectionOutOfBounds, "tensor directory offset {dir_offset} does not follow the metadata section (offset {metadata_offset} + size {metadata_size})");
        }
        let dir_end = match dir_offset.checked_add(dir_size) {
            Some(e) if e <= file_len => e,
            _ => bail!(Status::SectionOutOfBounds, "tensor directory (offset {dir_offset}, size {dir_size}) extends past the end of the {file_len}-byte file"),
        };
        if align_up(dir_end) != Some(data_offset) {
            bail!(Status::SectionOutOfBounds, "data_offset {data_offset} is not the directory end {dir_end} rounded up to {ALIGNMENT}");
        }
        match data_offset.checked_add(data_size) {
            Some(e) if e == file_len => {}
            Some(e) if e < file_len => bail!(Status::HoleOrTrailingBytes, "{} trailing bytes after the data section", file_len - e),
            _ => bail!(Status::SectionOutOfBounds, "data section (offset {data_offset}, size {data_size}) extends past the end of the {file_len}-byte file"),
        }
        // From here on every section range is within the file, so the casts are lossless.
        let (dir_end, data_offset) = (dir_end as usize, data_offset as usize);
        if file[dir_end..data_offset].iter().any(|&b| b != 0) {
            bail!(Status::HoleOrTrailingBytes, "padding between tensor directory and data is not zero");
        }
        let computed = header_checksum(&file[..data_offset]);
        if computed != stored_header_checksum {
            bail!(Status::ChecksumMismatch, "header checksum is {stored_header_checksum:016x}, the header, metadata and directory hash to {computed:016x}");
        }

        let metadata = parse_metadata(&file[HEADER_SIZE..dir_offset as usize], metadata_count)?;
        let (tensors, tensors_by_name) =
            parse_directory(&file[dir_offset as usize..dir_end], tensor_count, file, data_offset)?;

        if verify_payload {
            let computed = super::checksum::xxh64(&file[data_offset..]);
            if computed != payload_checksum {
                bail!(Status::ChecksumMismatch, "payload checksum is {payload_checksum:016x}, the tensor data hashes to {computed:016x}");
            }
        }

        Ok(FileIndex {
            version_major,
            version_minor,
            metadata,
            tensors,
            tensors_by_name,
            data_range: data_offset..file.len(),
            header_checksum: stored_header_checksum,
            payload_checksum,
        })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index(name).map(|i| &self.tensors[i])
    }

    /// The position of tensor `name` in `tensors`.
    pub fn tensor_index(&self, name: &str) -> Option<usize> {
        let at = self.tensors_by_name.binary_search_by(|&i| self.tensors[i as usize].name.as_str().cmp(name)).ok()?;
        Some(self.tensors_by_name[at] as usize)
    }
}

/// Sorts `v` by `less` in O(n log n) with no allocation: a few hundred bytes of code, where
/// `sort_unstable_by` is 4 KiB on a microcontroller (docs/EMBEDDED.md).
fn heapsort_by(v: &mut [u32], less: impl Fn(u32, u32) -> bool) {
    // Moves v[root] down until both children are smaller, in the heap v[..end].
    let sift_down = |v: &mut [u32], mut root: usize, end: usize| loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && less(v[child], v[child + 1]) {
            child += 1;
        }
        if !less(v[root], v[child]) {
            return;
        }
        v.swap(root, child);
        root = child;
    };
    for root in (0..v.len() / 2).rev() {
        sift_down(v, root, v.len());
    }
    for end in (1..v.len()).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

fn parse_metadata(section: &[u8], count: usize) -> Result<BTreeMap<String, MetaValue>> {
    let mut c = Cursor::new(section, "metadata");
    // Each entry takes at least 9 bytes (key length, type, 1-byte value): bounds the loop.
    if count > section.len() / 9 {
        bail!(Status::BadMetadata, "metadata_count {count} cannot fit in a {}-byte section", section.len());
    }
    let mut map = BTreeMap::new();
    let e = Status::BadMetadata;
    for _ in 0..count {
        let key = c.string(MAX_NAME_LEN, e, "metadata key")?;
        check_name(&key, "metadata")?;
        let ty = c.u32(e, "metadata value type")?;
        let value = match MetaType::from_u32(ty) {
            Some(MetaType::U32) => MetaValue::U32(c.u32(e, "u32 value")?),
            Some(MetaType::I32) => MetaValue::I32(c.u32(e, "i32 value")? as i32),
            Some(MetaType::U64) => MetaValue::U64(c.u64(e, "u64 value")?),
            Some(MetaType::F32) => MetaValue::F32(f32::from_bits(c.u32(e, "f32 value")?)),
            Some(MetaType::Bool) => match c.take(1, e, "bool value")?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                v => bail!(Status::BadMetadata, "metadata {key:?}: bool value {v} is not 0 or 1"),
            },
            Some(MetaType::String) => MetaValue::Str(c.string(MAX_STRING_LEN, e, "string value")?),
            Some(MetaType::StringArray) => {
                let n = c.u32(e, "string array count")? as usize;
                if n > c.remaining() / 4 {
                    bail!(Status::BadMetadata, "metadata {key:?}: string array count {n} exceeds the bytes left");
                }
                let mut items = Vec::new();
                if items.try_reserve_exact(n).is_err() {
                    bail!(Status::OutOfMemory, "metadata {key:?}: cannot allocate {n} string slots");
                }
                for _ in 0..n {
                    items.push(c.string(MAX_STRING_LEN, e, "string array item")?);
                }
                MetaValue::StrArray(items)
            }
            None => bail!(Status::BadMetadata, "metadata {key:?}: unknown value type {ty}"),
        };
        if map.contains_key(&key) {
            bail!(Status::DuplicateName, "metadata key {key:?} appears twice");
        }
        map.insert(key, value);
    }
    if c.remaining() != 0 {
        bail!(Status::BadMetadata, "{} unparsed bytes at the end of the metadata section", c.remaining());
    }
    Ok(map)
}

type Directory = (Vec<TensorInfo>, Vec<u32>);

fn parse_directory(section: &[u8], count: usize, file: &[u8], data_offset: usize) -> Result<Directory> {
    let file_len = file.len();
    let mut c = Cursor::new(section, "tensor directory");
    // Each entry takes at least 37 bytes (name length + 1, dtype, rank, one dim, offset, size).
    if count > section.len() / 37 {
        bail!(Status::BadTensorEntry, "tensor_count {count} cannot fit in a {}-byte directory", section.len());
    }
    let e = Status::BadTensorEntry;
    let data_size = (file_len - data_offset) as u64;
    let mut tensors = Vec::new();
    if tensors.try_reserve_exact(count).is_err() {
        bail!(Status::OutOfMemory, "cannot allocate the directory of {count} tensors");
    }
    let mut expected_offset: u64 = 0; // relative to the data section
    for _ in 0..count {
        let name = c.string(MAX_NAME_LEN, e, "tensor name")?;
        check_name(&name, "tensor directory")?;
        let dtype_raw = c.u32(e, "dtype")?;
        let Some(dtype) = DType::from_u32(dtype_raw) else {
            bail!(Status::BadTensorEntry, "tensor {name:?}: unknown dtype {dtype_raw}");
        };
        let rank = c.u32(e, "rank")? as usize;
        if rank == 0 || rank > MAX_RANK {
            bail!(Status::BadTensorEntry, "tensor {name:?}: rank {rank} not in 1..={MAX_RANK}");
        }
        let mut dims = Vec::with_capacity(rank);
        for _ in 0..rank {
            let d = c.u64(e, "dimension")?;
            if d == 0 {
                bail!(Status::BadTensorEntry, "tensor {name:?}: zero dimension");
            }
            dims.push(d);
        }
        let offset = c.u64(e, "offset")?;
        let nbytes = c.u64(e, "byte size")?;
        match dtype.byte_size(&dims) {
            Some(n) if n == nbytes => {}
            Some(n) => bail!(Status::BadTensorEntry, "tensor {name:?}: byte size {nbytes} but {} {dims:?} needs {n}", dtype.name()),
            None => bail!(Status::BadTensorEntry, "tensor {name:?}: shape {dims:?} is invalid for {}", dtype.name()),
        }
        let end = match offset.checked_add(nbytes) {
            Some(end) if end <= data_size => end,
            _ => bail!(Status::TensorOutOfBounds, "tensor {name:?}: bytes {offset}+{nbytes} pass the end of the {data_size}-byte data section"),
        };
        // data_offset is aligned, so alignment relative to the section is alignment in the file.
        if offset % ALIGNMENT as u64 != 0 {
            bail!(Status::MisalignedTensor, "tensor {name:?}: offset {offset} is not a multiple of {ALIGNMENT}");
        }
        if offset < expected_offset {
            bail!(Status::OverlappingTensors, "tensor {name:?}: offset {offset} overlaps the previous tensor ending at {expected_offset}");
        }
        let padded_prev_end = align_up(expected_offset).unwrap_or(u64::MAX);
        if offset != padded_prev_end && !(tensors.is_empty() && offset == 0) {
            bail!(Status::HoleOrTrailingBytes, "tensor {name:?}: gap before offset {offset} (previous tensor ends at {expected_offset})");
        }
        let (abs_start, abs_end) = (data_offset + offset as usize, data_offset + end as usize);
        let prev_end_abs = data_offset + expected_offset as usize;
        if file[prev_end_abs..abs_start].iter().any(|&b| b != 0) {
            bail!(Status::HoleOrTrailingBytes, "tensor {name:?}: alignment padding before it is not zero");
        }
        tensors.push(TensorInfo { name, dtype, dims, range: abs_start..abs_end });
        expected_offset = end;
    }
    if c.remaining() != 0 {
        bail!(Status::BadTensorEntry, "{} unparsed bytes at the end of the tensor directory", c.remaining());
    }
    if expected_offset != data_size {
        bail!(Status::HoleOrTrailingBytes, "data section is {data_size} bytes but tensors end at {expected_offset}");
    }
    // count <= section bytes / 37, so indices fit u32.
    let mut by_name: Vec<u32> = (0..tensors.len() as u32).collect();
    heapsort_by(&mut by_name, |a, b| tensors[a as usize].name < tensors[b as usize].name);
    if let Some(w) = by_name.windows(2).find(|w| tensors[w[0] as usize].name == tensors[w[1] as usize].name) {
        bail!(Status::DuplicateName, "tensor {:?} appears twice", tensors[w[1] as usize].name);
    }
    Ok((tensors, by_name))
}
