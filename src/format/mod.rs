//! The `.q8b` container: a fixed header, typed key/value metadata, a tensor directory and
//! 64-byte-aligned tensor data, all little-endian. `docs/FORMAT.md` is the specification;
//! this module holds its constants, the validating reader over `&[u8]` and (with `std`) the writer.

pub mod checksum;
pub mod reader;
#[cfg(feature = "std")]
pub mod writer;

pub use reader::{FileIndex, TensorInfo};

use alloc::string::String;
use alloc::vec::Vec;

/// First 8 bytes of every file.
pub const MAGIC: [u8; 8] = *b"Q8BERT\0\x1a";
/// Structural version: a reader rejects another major, and a minor newer than its own.
/// 1.1 added int8 attention (per-layer query/key/value scales), 1.2 per-row (dynamic) input
/// quantization of linear layers; writers write the lowest
/// version that can hold what a file uses, so 1.0 readers keep reading 1.0-style files.
pub const VERSION_MAJOR: u16 = 1;
pub const VERSION_MINOR: u16 = 10;
/// Size of the fixed header; the metadata section starts right after it.
pub const HEADER_SIZE: usize = 128;
/// Byte offsets of the header fields read by both the reader and `arena::open_bound`
/// (little-endian u32 counts, u64 sizes and offsets; docs/FORMAT.md has the whole header).
pub(crate) mod header_at {
    pub const METADATA_COUNT: usize = 24;
    pub const TENSOR_COUNT: usize = 28;
    pub const METADATA_SIZE: usize = 40;
    pub const DIRECTORY_OFFSET: usize = 48;
    pub const DIRECTORY_SIZE: usize = 56;
}
/// Every tensor starts at a multiple of this (from the start of the file).
pub const ALIGNMENT: usize = 64;
/// Byte range of the header checksum field, excluded from the bytes it covers.
pub const HEADER_CHECKSUM_FIELD: core::ops::Range<usize> = 80..88;
/// Byte range of the payload checksum field (covered by the header checksum).
pub const PAYLOAD_CHECKSUM_FIELD: core::ops::Range<usize> = 88..96;

/// Limits that keep a hostile file from making the reader allocate or loop much.
pub const MAX_NAME_LEN: usize = 256;
pub const MAX_STRING_LEN: usize = 1 << 20;
pub const MAX_RANK: usize = 4;

/// Tensor element types. Numbers are part of the format.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32 = 0,
    I32 = 1,
    I8 = 2,
    U8 = 3,
    U32 = 4,
    /// int8 weight matrix of logical shape [N, K] packed for the GEMM kernels: panels of 16 output
    /// rows, K in groups of 4 (see `kernels::packed_len`). N padded to 16, K to 4, with zeros.
    I8P16K4 = 16,
}

impl DType {
    pub fn from_u32(v: u32) -> Option<DType> {
        Some(match v {
            0 => DType::F32,
            1 => DType::I32,
            2 => DType::I8,
            3 => DType::U8,
            4 => DType::U32,
            16 => DType::I8P16K4,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I32 => "i32",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::U32 => "u32",
            DType::I8P16K4 => "i8_p16k4",
        }
    }

    /// Bytes a tensor of this type and shape occupies, or None on overflow / invalid rank.
    pub fn byte_size(self, dims: &[u64]) -> Option<u64> {
        match self {
            DType::I8P16K4 => {
                if dims.len() != 2 {
                    return None;
                }
                let n = dims[0].checked_add(15)? / 16 * 16;
                let k = dims[1].checked_add(3)? / 4 * 4;
                n.checked_mul(k)
            }
            _ => {
                let elem: u64 = match self {
                    DType::I8 | DType::U8 => 1,
                    _ => 4,
                };
                dims.iter().try_fold(elem, |acc, &d| acc.checked_mul(d))
            }
        }
    }
}

/// Metadata value types. Numbers are part of the format.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaType {
    U32 = 0,
    I32 = 1,
    U64 = 2,
    F32 = 3,
    Bool = 4,
    String = 5,
    StringArray = 6,
}

impl MetaType {
    pub fn from_u32(v: u32) -> Option<MetaType> {
        Some(match v {
            0 => MetaType::U32,
            1 => MetaType::I32,
            2 => MetaType::U64,
            3 => MetaType::F32,
            4 => MetaType::Bool,
            5 => MetaType::String,
            6 => MetaType::StringArray,
            _ => return None,
        })
    }
}

/// Round `v` up to a multiple of `ALIGNMENT`, or None on overflow.
pub fn align_up(v: u64) -> Option<u64> {
    let a = ALIGNMENT as u64;
    Some(v.checked_add(a - 1)? / a * a)
}

/// A metadata value (owned: metadata is small and parsed once at load).
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U32(u32),
    I32(i32),
    U64(u64),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArray(Vec<String>),
}

impl MetaValue {
    /// The value's type as error messages name it.
    pub fn type_name(&self) -> &'static str {
        match self {
            MetaValue::U32(_) => "u32",
            MetaValue::I32(_) => "i32",
            MetaValue::U64(_) => "u64",
            MetaValue::F32(_) => "f32",
            MetaValue::Bool(_) => "bool",
            MetaValue::Str(_) => "string",
            MetaValue::StrArray(_) => "string array",
        }
    }

    pub fn meta_type(&self) -> MetaType {
        match self {
            MetaValue::U32(_) => MetaType::U32,
            MetaValue::I32(_) => MetaType::I32,
            MetaValue::U64(_) => MetaType::U64,
            MetaValue::F32(_) => MetaType::F32,
            MetaValue::Bool(_) => MetaType::Bool,
            MetaValue::Str(_) => MetaType::String,
            MetaValue::StrArray(_) => MetaType::StringArray,
        }
    }
}

impl core::fmt::Display for MetaValue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MetaValue::U32(v) => write!(f, "{v}"),
            MetaValue::I32(v) => write!(f, "{v}"),
            MetaValue::U64(v) => write!(f, "{v}"),
            MetaValue::F32(v) => write!(f, "{v}"),
            MetaValue::Bool(v) => write!(f, "{v}"),
            MetaValue::Str(v) => write!(f, "{v:?}"),
            MetaValue::StrArray(v) => write!(f, "{v:?}"),
        }
    }
}
