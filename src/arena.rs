//! The caller's arena: one byte buffer for everything a model needs, as TensorFlow Lite Micro's
//! tensor arena, for firmware that has no heap.
//!
//! With the cargo feature `arena` (and without `std`) q8bert installs [`ARENA`] as the global
//! allocator, so a firmware writes no `#[global_allocator]`: it gives the arena its memory once
//! ([`Arena::provide`]) and opens models with [`Arena::open`], which checks up front that the
//! model and the working memory of the largest run fit, and says how much is needed if not.
//!
//! The allocator is a stack with deferred frees: every block has a small header linking it to
//! the block below; freeing the top block (or any block, once every block above it is free)
//! gives its bytes back, so a workspace dropped after a model's runs, or a model closed, returns
//! the arena to where it was, whatever the order of the frees inside. A block freed below a live
//! one waits until the ones above it go. Growing the top block is done in place.
//!
//! One thread only: the arena has no lock (thumbv6m has no compare-and-swap). A firmware must
//! not allocate from interrupt handlers while a model opens or runs.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::mem::{align_of, size_of};
use core::ptr;

use crate::error::Status;
use crate::format::{header_at, HEADER_SIZE, MAX_RANK};
use crate::{Error, Model, Options, Workspace};

/// Bytes at the end of the arena only requests of at most this size may use: an allocation
/// that fails (a workspace too large) still leaves room for the error message saying so.
pub const RESERVE: usize = 256;

/// Per-block header: the offset of the block below's header (or `NONE`), and the offset where
/// this block's bytes start (the top before it was allocated), whose top bit marks it freed.
const HEADER: usize = 2 * size_of::<usize>();
const NONE: usize = usize::MAX;
const FREED: usize = 1 << (usize::BITS - 1);

/// A stack allocator over the caller's buffer. See the module documentation.
pub struct Arena {
    base: Cell<*mut u8>,
    capacity: Cell<usize>,
    /// Offset of the first free byte.
    top: Cell<usize>,
    /// Offset of the topmost block's header, or `NONE`.
    last: Cell<usize>,
    peak: Cell<usize>,
}

// SAFETY: the arena is used from one thread (module documentation); nothing else touches its
// cells. `Sync` is needed only to make it a `static` global allocator.
unsafe impl Sync for Arena {}

/// q8bert's global allocator with the `arena` feature on a `no_std` build.
#[cfg(all(feature = "arena", not(feature = "std")))]
#[global_allocator]
pub static ARENA: Arena = Arena::new();

/// Why [`Arena::open`] failed. Too small an arena allocates nothing to say so.
#[derive(Debug)]
pub enum ArenaError {
    /// No memory was given with [`Arena::provide`].
    NoMemory,
    /// The arena has `available` bytes; the model and its working memory need `needed` (for a
    /// model that did not open, a bound computed from the file's header sections).
    TooSmall { needed: usize, available: usize },
    /// The model or the run shape is invalid.
    Model(Error),
}

impl core::fmt::Display for ArenaError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ArenaError::NoMemory => f.write_str("the arena has no memory: call Arena::provide first"),
            ArenaError::TooSmall { needed, available } => {
                write!(f, "the arena has {available} bytes free, {needed} are needed: give it at least that many")
            }
            ArenaError::Model(e) => e.fmt(f),
        }
    }
}

impl From<Error> for ArenaError {
    fn from(e: Error) -> Self {
        ArenaError::Model(e)
    }
}

impl From<ArenaError> for Error {
    fn from(e: ArenaError) -> Self {
        match e {
            ArenaError::Model(e) => e,
            other => Error::new(Status::OutOfMemory, alloc::format!("{other}")),
        }
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

impl Arena {
    /// An arena without memory: every allocation fails until [`Arena::provide`].
    pub const fn new() -> Arena {
        Arena {
            base: Cell::new(ptr::null_mut()),
            capacity: Cell::new(0),
            top: Cell::new(0),
            last: Cell::new(NONE),
            peak: Cell::new(0),
        }
    }

    /// Gives the arena its memory. Refused (false) while blocks of earlier memory are live.
    pub fn provide(&self, memory: &'static mut [u8]) -> bool {
        // SAFETY: `memory` is exclusively ours for the rest of the program.
        unsafe { self.provide_raw(memory.as_mut_ptr(), memory.len()) }
    }

    /// [`Arena::provide`] for memory the caller manages (tests, memory not in a static).
    ///
    /// # Safety
    /// `base..base + len` must be valid for writes and used by nothing else for as long as any
    /// block allocated from it is live.
    pub unsafe fn provide_raw(&self, base: *mut u8, len: usize) -> bool {
        if self.last.get() != NONE {
            return false;
        }
        self.base.set(base);
        // Offsets keep their top bit free for the FREED mark.
        self.capacity.set(len.min(FREED - 1));
        self.top.set(0);
        self.peak.set(0);
        true
    }

    /// Bytes in use, headers and alignment included.
    pub fn used(&self) -> usize {
        self.top.get()
    }

    /// Most bytes ever in use since the memory was provided.
    pub fn peak(&self) -> usize {
        self.peak.get()
    }

    /// Starts [`Arena::peak`] over from the bytes in use now (to measure one model).
    pub fn reset_peak(&self) {
        self.peak.set(self.top.get());
    }

    pub fn capacity(&self) -> usize {
        self.capacity.get()
    }

    /// Bytes a large request can still get (the last [`RESERVE`] bytes left out).
    pub fn available(&self) -> usize {
        self.capacity.get().saturating_sub(RESERVE).saturating_sub(self.top.get())
    }

    /// Opens `bytes` in this arena for runs of up to `batch` sequences of `seq_len` tokens:
    /// checks, before allocating, that the model's structures fit (a bound from the file's
    /// header sections, [`open_bound`]), then that its working memory for that shape
    /// (`Model::working_memory`) fits what is left. The returned workspace grows on its first
    /// `run_with` and is reused after: run with [`Model::run_with`], not `Model::run` (which
    /// makes a workspace per call). Drop the workspace, then the model, to give the bytes back.
    /// `options.huge_pages` is ignored here: the copy would live outside the arena.
    // Never inlined into the caller (a top-level call): the firmware stage counts q8bert's code
    // by symbol, and one copy is the smallest anyway.
    #[inline(never)]
    pub fn open<'m>(&self, bytes: &'m [u8], options: &Options, batch: usize, seq_len: usize) -> Result<(Model<'m>, Workspace), ArenaError> {
        if self.base.get().is_null() && self.capacity.get() == 0 {
            return Err(ArenaError::NoMemory);
        }
        let bound = open_bound(bytes);
        if bound > self.available() {
            return Err(ArenaError::TooSmall { needed: bound.saturating_add(self.used()), available: self.available() + self.used() });
        }
        let before = self.used();
        #[cfg(feature = "std")]
        let options = &Options { huge_pages: false, ..options.clone() };
        let model = Model::from_bytes(bytes, options)?;
        let working = working_bound(&model, batch, seq_len)?;
        if working > self.available() {
            let needed = (self.used() - before).saturating_add(working);
            drop(model);
            return Err(ArenaError::TooSmall { needed, available: self.available() + self.used() - before });
        }
        Ok((model, Workspace::new()))
    }

    fn block_start(&self, header: usize) -> usize {
        // SAFETY: `header` is the offset of a live block's header inside the provided memory,
        // aligned for usize (see `alloc`).
        unsafe { (self.base.get().add(header + size_of::<usize>()) as *const usize).read() }
    }
}

/// Arena bytes a workspace takes for runs of up to `batch` sequences of `seq_len` tokens: the
/// model's working memory plus each buffer's header and alignment. An arena for one model needs
/// `RESERVE + max(open_bound(bytes), bytes the open took + working_bound(..))`.
pub fn working_bound(model: &Model, batch: usize, seq_len: usize) -> Result<usize, Error> {
    Ok(model.working_memory(batch, seq_len)?.saturating_add(WORKSPACE_BLOCKS * WORKSPACE_BLOCK))
}

/// Buffers a workspace may allocate in one run (its fields, the per-run task lists).
const WORKSPACE_BLOCKS: usize = 32;
/// Header and alignment padding of one workspace buffer (aligned to 8 at most).
const WORKSPACE_BLOCK: usize = HEADER + 8;

// SAFETY: blocks never overlap: each starts at or above `top` and `top` moves past it; a block
// is given back only when it and every block above it are freed. Addresses are aligned as the
// layout asks (checked arithmetic, null when the request does not fit).
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.base.get() as usize;
        let start = self.top.get();
        let align = layout.align().max(align_of::<usize>());
        let limit = if layout.size() <= RESERVE { self.capacity.get() } else { self.capacity.get().saturating_sub(RESERVE) };
        let Some(data) = (base + start).checked_add(HEADER + align - 1).map(|a| (a & !(align - 1)) - base) else {
            return ptr::null_mut();
        };
        match data.checked_add(layout.size()) {
            Some(end) if end <= limit => {
                let header = data - HEADER;
                // SAFETY: `header..data` is inside the memory (data <= end <= capacity), unused
                // (at or above `top`), and aligned for usize (data is, HEADER is a multiple).
                unsafe {
                    let h = self.base.get().add(header) as *mut usize;
                    h.write(self.last.get());
                    h.add(1).write(start);
                }
                self.last.set(header);
                self.top.set(end);
                self.peak.set(self.peak.get().max(end));
                // SAFETY: in bounds, see above.
                unsafe { self.base.get().add(data) }
            }
            _ => ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, _layout: Layout) {
        let header = block as usize - self.base.get() as usize - HEADER;
        // SAFETY: `block` came from `alloc` (GlobalAlloc contract), so its header is live.
        unsafe {
            let s = self.base.get().add(header + size_of::<usize>()) as *mut usize;
            s.write(s.read() | FREED);
        }
        // Give back every freed block at the top.
        while self.last.get() != NONE {
            let last = self.last.get();
            let start = self.block_start(last);
            if start & FREED == 0 {
                break;
            }
            self.top.set(start & !FREED);
            // SAFETY: `last` is a live header (the topmost).
            self.last.set(unsafe { (self.base.get().add(last) as *const usize).read() });
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let data = block as usize - self.base.get() as usize;
        let limit = if new_size <= RESERVE { self.capacity.get() } else { self.capacity.get().saturating_sub(RESERVE) };
        if data - HEADER == self.last.get() {
            if let Some(end) = data.checked_add(new_size).filter(|&end| end <= limit) {
                // The top block grows or shrinks in place.
                self.top.set(end);
                self.peak.set(self.peak.get().max(end));
                return block;
            }
        }
        // SAFETY: the layout is valid (GlobalAlloc contract: new_size rounded up to the
        // alignment does not overflow isize).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as `GlobalAlloc::realloc`'s default: a new block, the old one copied and freed.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                ptr::copy_nonoverlapping(block, new, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
            new
        }
    }
}

/// Upper bound of the bytes `Model::from_bytes` allocates for `bytes` in an [`Arena`] (headers
/// and alignment included), from the header's counts and section sizes and a walk over the
/// metadata and the tensor directory that allocates nothing. A file that does not parse gets
/// a bound too: its open fails early, with an error message that fits.
pub fn open_bound(bytes: &[u8]) -> usize {
    let word = size_of::<usize>();
    // Per allocation: its header and the worst alignment padding (q8bert's blocks need 8 at most).
    let block = HEADER + 8;
    let (string, meta_value) = (size_of::<alloc::string::String>(), size_of::<crate::format::MetaValue>());
    // A B-tree entry: its share of a node at least 5 of 11 slots full (keys, values, the
    // parent link and lengths, and for internal nodes 12 child links).
    let btree_entry = |kv: usize| (11 * kv + 12 * word + 2 * word + block) / 5 + 1;
    let shape = FileShape::read(bytes);
    // Keys and string values copied, string-array slots, the map.
    let metadata = shape.metadata_entries * (btree_entry(string + meta_value) + block)
        + shape.metadata_strings * (string + block)
        + shape.metadata_bytes;
    // The directory entry, its name and dimensions, its place in the by-name order (the vector
    // is built twice: counting up, then sorted), and the layout's "used" flag.
    let tensor = size_of::<crate::format::TensorInfo>() + 2 * block + MAX_RANK * 8 + 2 * 4 + 1;
    let tensors = shape.tensors * tensor + shape.name_bytes + 4 * block;
    // The head's labels, prompts and pooling lists copy metadata strings.
    let copies = shape.metadata_strings * (string + block) + shape.metadata_bytes;
    // The layers' references, in a vector grown by doubling (a layer has at least 16 tensors);
    // the names formatted while resolving, each freed before the next; an error message.
    let layers = 2 * (size_of::<crate::model::LayerRefs>() + block) * (shape.tensors / 16 + 1);
    let tokenizer = if cfg!(feature = "text") { text_bound(&shape) } else { 0 };
    // Each term is at most a small multiple of the file's length: only the tokenizer's can
    // come near usize::MAX (a file near the address space's size).
    (size_of::<Model>() + 1024 + metadata + tensors + copies + layers).saturating_add(tokenizer)
}

/// What the tokenizer builds at open (the `text` feature): its tables are sized by the
/// vocabulary's tensors, and take at most 1.25 times their bytes (measured: WordPiece 0.9,
/// byte-level BPE 0.5, Unigram 0.2, tests/arena.rs).
fn text_bound(shape: &FileShape) -> usize {
    shape.tokenizer_tensor_bytes.saturating_add(shape.tokenizer_tensor_bytes / 4).saturating_add(8192)
}

/// Counts read from a model file without allocating.
#[derive(Default)]
struct FileShape {
    metadata_entries: usize,
    /// Strings held by metadata values (one per string, one per string-array item).
    metadata_strings: usize,
    metadata_bytes: usize,
    tensors: usize,
    /// Bytes of the tensor names (the directory's size if it cannot be walked).
    name_bytes: usize,
    /// Bytes of the `tokenizer.*` tensors.
    tokenizer_tensor_bytes: usize,
}

impl FileShape {
    fn read(bytes: &[u8]) -> FileShape {
        let word = |at: usize| bytes.get(at..at + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
        let dword = |at: usize| bytes.get(at..at + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()) as usize);
        let mut shape = FileShape { metadata_entries: word(header_at::METADATA_COUNT), tensors: word(header_at::TENSOR_COUNT), ..FileShape::default() };
        let (meta_size, dir_offset, dir_size) = (dword(header_at::METADATA_SIZE), dword(header_at::DIRECTORY_OFFSET), dword(header_at::DIRECTORY_SIZE));
        let metadata = bytes.get(HEADER_SIZE..HEADER_SIZE.saturating_add(meta_size)).unwrap_or(&[]);
        let directory = bytes.get(dir_offset..dir_offset.saturating_add(dir_size)).unwrap_or(&[]);
        shape.metadata_bytes = metadata.len();
        // A file the walks cannot follow fails to parse at open: the counts above bound that.
        let _ = shape.walk_metadata(metadata);
        if shape.walk_directory(directory, bytes.len()).is_none() {
            shape.name_bytes = directory.len();
        }
        // The parser refuses counts its sections cannot hold (9 and 37 bytes per entry).
        shape.metadata_entries = shape.metadata_entries.min(metadata.len() / 9 + 1);
        shape.tensors = shape.tensors.min(directory.len() / 37 + 1);
        shape
    }

    fn walk_metadata(&mut self, section: &[u8]) -> Option<()> {
        let mut c = Walk { bytes: section, pos: 0 };
        for _ in 0..self.metadata_entries.min(section.len() / 9) {
            let key = c.u32()?;
            c.skip(key)?;
            match c.u32()? {
                0 | 1 | 3 => c.skip(4)?,
                2 => c.skip(8)?,
                4 => c.skip(1)?,
                5 => {
                    self.metadata_strings += 1;
                    let n = c.u32()?;
                    c.skip(n)?;
                }
                6 => {
                    let n = c.u32()?;
                    self.metadata_strings += n.min(section.len() / 4);
                    for _ in 0..n {
                        let len = c.u32()?;
                        c.skip(len)?;
                    }
                }
                _ => return None,
            }
        }
        Some(())
    }

    fn walk_directory(&mut self, section: &[u8], file_len: usize) -> Option<()> {
        let mut c = Walk { bytes: section, pos: 0 };
        for _ in 0..self.tensors.min(section.len() / 37) {
            let len = c.u32()?;
            let name = section.get(c.pos..c.pos.checked_add(len)?)?;
            c.skip(len)?;
            self.name_bytes += len;
            c.skip(4)?; // dtype
            let rank = c.u32()?;
            c.skip(rank.checked_mul(8)?)?;
            c.skip(8)?; // offset
            let size = c.u64()?;
            if name.starts_with(b"tokenizer.") {
                // No tensor is larger than its file (a bad size fails the parse after).
                self.tokenizer_tensor_bytes = self.tokenizer_tensor_bytes.saturating_add(size.min(file_len));
            }
        }
        Some(())
    }
}

struct Walk<'b> {
    bytes: &'b [u8],
    pos: usize,
}

impl Walk<'_> {
    fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len())?;
        self.pos = end;
        Some(())
    }
    fn u32(&mut self) -> Option<usize> {
        let b = self.bytes.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn u64(&mut self) -> Option<usize> {
        let b = self.bytes.get(self.pos..self.pos + 8)?;
        self.pos += 8;
        usize::try_from(u64::from_le_bytes(b.try_into().ok()?)).ok()
    }
}
