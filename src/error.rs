//! One status enum for every failure, with numbers that never change (they are the C ABI's
//! `q8bert_status`), and an error type that carries a human-readable detail message.

use alloc::string::String;
use core::fmt;

/// Result status of every fallible operation. The numbers are stable across versions; new codes
/// are only ever appended inside their group.
///
/// Groups: 1-99 caller errors, 100-199 I/O, 200-299 model file, 300-399 resources, 900+ internal.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Success.
    Ok = 0,

    /// A required pointer argument was NULL.
    NullArgument = 1,
    /// An argument has an invalid value (zero batch, mask value not 0/1, bad option, ...).
    InvalidArgument = 2,
    /// An output buffer is too small; the detail message and the `*_len` out-parameter give the size needed.
    BufferTooSmall = 3,
    /// The sequence is longer than the model's maximum (max_position_embeddings).
    SequenceTooLong = 4,
    /// Input text is not valid UTF-8.
    InvalidUtf8 = 5,
    /// A token id or token type id is outside the model's vocabulary.
    TokenOutOfRange = 6,
    /// The options struct has an unknown `struct_size` or unknown flag bits.
    UnsupportedOptions = 7,
    /// The requested kernel is not compiled in or not supported by this CPU.
    KernelUnavailable = 8,
    /// The model's head does not support this call (e.g. labels of a regression model).
    UnsupportedOperation = 9,

    /// The model file could not be opened, read or memory-mapped.
    Io = 100,

    /// The file is shorter than its fixed header.
    FileTooShort = 200,
    /// The file does not start with the q8bert magic bytes.
    BadMagic = 201,
    /// The file's format version is not supported by this library.
    UnsupportedVersion = 202,
    /// A fixed header field has an invalid value (header size, alignment, flags, reserved bytes).
    BadHeader = 203,
    /// A section (metadata, tensor directory, data) lies outside the file or sections are not contiguous.
    SectionOutOfBounds = 204,
    /// A metadata entry is malformed (unknown value type, count or length past its section).
    BadMetadata = 205,
    /// A name or string value is too long, empty where not allowed, or not valid UTF-8.
    BadString = 206,
    /// Two metadata keys or two tensors have the same name.
    DuplicateName = 207,
    /// A tensor directory entry is malformed (unknown dtype, rank, zero dimension, byte size mismatch).
    BadTensorEntry = 208,
    /// A tensor's bytes lie outside the data section.
    TensorOutOfBounds = 209,
    /// A tensor's offset is not a multiple of the format's 64-byte alignment.
    MisalignedTensor = 210,
    /// Two tensors overlap, or tensors are not stored in directory order.
    OverlappingTensors = 211,
    /// Unaccounted bytes: a gap between tensors larger than alignment padding, non-zero padding, or trailing bytes.
    HoleOrTrailingBytes = 212,
    /// A required metadata key is missing or has the wrong value type.
    MissingMetadata = 213,
    /// The model configuration is inconsistent or out of the supported range.
    BadConfig = 214,
    /// A tensor the configuration requires is missing.
    MissingTensor = 215,
    /// A tensor has the wrong dtype for its role.
    WrongDtype = 216,
    /// A tensor's shape does not match the configuration.
    WrongShape = 217,
    /// A quantization scale is NaN, infinite or not positive.
    BadScale = 218,
    /// The vocabulary arrays are inconsistent (offsets, UTF-8, hash table, duplicates).
    BadVocab = 219,
    /// A special token id is outside the vocabulary.
    BadSpecialToken = 220,
    /// A checksum does not match the bytes it covers.
    ChecksumMismatch = 221,
    /// An in-memory model buffer is not aligned to 4 bytes.
    MisalignedBuffer = 222,
    /// The file contains a tensor this version does not know.
    UnknownTensor = 223,

    /// Memory allocation failed or the request exceeds the working-memory limit.
    OutOfMemory = 300,

    /// A bug in q8bert: an invariant did not hold.
    Internal = 900,
    /// A panic was caught at the C ABI boundary (a bug in q8bert).
    Panic = 901,
}

impl Status {
    /// Every status, in numeric order.
    pub const ALL: [Status; 38] = [Status::Ok, Status::NullArgument, Status::InvalidArgument, Status::BufferTooSmall, Status::SequenceTooLong, Status::InvalidUtf8, Status::TokenOutOfRange, Status::UnsupportedOptions, Status::KernelUnavailable, Status::UnsupportedOperation, Status::Io, Status::FileTooShort, Status::BadMagic, Status::UnsupportedVersion, Status::BadHeader, Status::SectionOutOfBounds, Status::BadMetadata, Status::BadString, Status::DuplicateName, Status::BadTensorEntry, Status::TensorOutOfBounds, Status::MisalignedTensor, Status::OverlappingTensors, Status::HoleOrTrailingBytes, Status::MissingMetadata, Status::BadConfig, Status::MissingTensor, Status::WrongDtype, Status::WrongShape, Status::BadScale, Status::BadVocab, Status::BadSpecialToken, Status::ChecksumMismatch, Status::MisalignedBuffer, Status::UnknownTensor, Status::OutOfMemory, Status::Internal, Status::Panic];

    pub fn from_u32(v: u32) -> Option<Status> {
        Status::ALL.iter().copied().find(|s| *s as u32 == v)
    }

    /// Static description of the status (no detail).
    pub fn description(self) -> &'static str {
        self.description_cstr().to_str().unwrap_or("")
    }

    /// The same description, NUL-terminated for the C ABI.
    pub const fn description_cstr(self) -> &'static core::ffi::CStr {
        match self {
            Status::Ok => c"ok",
            Status::NullArgument => c"a required pointer argument is NULL",
            Status::InvalidArgument => c"invalid argument",
            Status::BufferTooSmall => c"output buffer too small",
            Status::SequenceTooLong => c"sequence longer than the model maximum",
            Status::InvalidUtf8 => c"text is not valid UTF-8",
            Status::TokenOutOfRange => c"token id out of range",
            Status::UnsupportedOptions => c"unsupported options struct size or flags",
            Status::KernelUnavailable => c"requested kernel is not available on this CPU or build",
            Status::UnsupportedOperation => c"operation not supported by this model's head",
            Status::Io => c"I/O error reading the model file",
            Status::FileTooShort => c"model file too short",
            Status::BadMagic => c"not a q8bert model file (bad magic)",
            Status::UnsupportedVersion => c"unsupported model format version",
            Status::BadHeader => c"invalid model file header",
            Status::SectionOutOfBounds => c"model file section out of bounds",
            Status::BadMetadata => c"malformed model metadata",
            Status::BadString => c"invalid string in model file",
            Status::DuplicateName => c"duplicate name in model file",
            Status::BadTensorEntry => c"malformed tensor directory entry",
            Status::TensorOutOfBounds => c"tensor data out of bounds",
            Status::MisalignedTensor => c"misaligned tensor data",
            Status::OverlappingTensors => c"overlapping or unordered tensors",
            Status::HoleOrTrailingBytes => c"unaccounted bytes in model file",
            Status::MissingMetadata => c"required metadata missing",
            Status::BadConfig => c"invalid model configuration",
            Status::MissingTensor => c"required tensor missing",
            Status::WrongDtype => c"tensor has the wrong dtype",
            Status::WrongShape => c"tensor has the wrong shape",
            Status::BadScale => c"invalid quantization scale",
            Status::BadVocab => c"invalid vocabulary",
            Status::BadSpecialToken => c"special token id outside the vocabulary",
            Status::ChecksumMismatch => c"checksum mismatch",
            Status::MisalignedBuffer => c"model buffer not aligned to 4 bytes",
            Status::UnknownTensor => c"unknown tensor in model file",
            Status::OutOfMemory => c"out of memory",
            Status::Internal => c"internal error",
            Status::Panic => c"internal error: panic caught at the API boundary",
        }
    }
}

/// An error: a stable [`Status`] plus a message saying exactly what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    pub message: String,
}

impl Error {
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Error { status, message: message.into() }
    }

    /// `bail!`'s constructor: out of line and cold, so each of the crate's ~170 error sites is a
    /// call with its arguments rather than an inlined `format!` (flash on a microcontroller).
    #[cold]
    #[inline(never)]
    pub(crate) fn formatted(status: Status, message: core::fmt::Arguments<'_>) -> Self {
        Error { status, message: alloc::fmt::format(message) }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.description(), self.message)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

pub type Result<T, E = Error> = core::result::Result<T, E>;

/// `return Err(Error::new(status, format!(...)))` in one line.
macro_rules! bail {
    ($status:expr, $($arg:tt)+) => {
        return Err($crate::error::Error::formatted($status, format_args!($($arg)+)))
    };
}
pub(crate) use bail;
