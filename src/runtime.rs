//! [`Model`]: an opened model file (memory map or caller buffer), its validated layout, the
//! kernel chosen for it, and reusable scratch memory. Immutable after creation and shareable
//! between threads.

use alloc::collections::BTreeMap;
use alloc::string::String;

use crate::bert::{self, Input, Workspace};
use crate::error::{bail, Result, Status};
use crate::format::{FileIndex, MetaValue, TensorInfo};
use crate::kernels::Kernel;
use crate::model::{choose_kernel, Config, HeadConfig, ModelLayout, Options, TokenizerSettings};

enum Storage<'a> {
    Borrowed(&'a [u8]),
    #[cfg(feature = "std")]
    Mapped(memmap2::Mmap),
}

impl Storage<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Borrowed(b) => b,
            #[cfg(feature = "std")]
            Storage::Mapped(m) => m,
        }
    }
}

/// A loaded model. `'a` is the lifetime of a caller-provided buffer (`'static` for files).
pub struct Model<'a> {
    storage: Storage<'a>,
    index: FileIndex,
    layout: ModelLayout,
    kernel: Kernel,
    num_threads: usize,
    #[cfg(feature = "std")]
    pool: std::sync::Mutex<alloc::vec::Vec<Workspace>>,
}

impl<'a> Model<'a> {
    /// Opens a model held in memory. Nothing is copied: `bytes` must stay alive and unchanged
    /// as long as the model, and must start at a 4-byte-aligned address.
    pub fn from_bytes(bytes: &'a [u8], options: &Options) -> Result<Model<'a>> {
        Self::from_storage(Storage::Borrowed(bytes), options)
    }

    fn from_storage(storage: Storage<'a>, options: &Options) -> Result<Model<'a>> {
        let bytes = storage.bytes();
        if bytes.as_ptr() as usize % 4 != 0 {
            bail!(Status::MisalignedBuffer, "model buffer starts at {:p}, which is not 4-byte aligned", bytes.as_ptr());
        }
        let kernel = choose_kernel(options.kernel)?;
        let index = FileIndex::parse(bytes, options.verify_checksum)?;
        let layout = ModelLayout::resolve(&index, bytes)?;
        let num_threads = if options.num_threads == 0 { default_threads() } else { options.num_threads };
        Ok(Model {
            storage,
            index,
            layout,
            kernel,
            num_threads,
            #[cfg(feature = "std")]
            pool: std::sync::Mutex::new(alloc::vec::Vec::new()),
        })
    }

    pub fn config(&self) -> &Config {
        &self.layout.config
    }

    pub fn head(&self) -> &HeadConfig {
        &self.layout.head
    }

    pub fn tokenizer_settings(&self) -> &TokenizerSettings {
        &self.layout.tokenizer
    }

    pub fn layout(&self) -> &ModelLayout {
        &self.layout
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    pub fn num_threads(&self) -> usize {
        self.num_threads
    }

    /// All metadata, including free-form training information.
    pub fn metadata(&self) -> &BTreeMap<String, MetaValue> {
        &self.index.metadata
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.index.tensors
    }

    pub fn file_index(&self) -> &FileIndex {
        &self.index
    }

    /// The whole model file.
    pub fn file_bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// Floats `run` writes for `batch` sequences of `seq_len` tokens (saturating).
    pub fn output_len(&self, batch: usize, seq_len: usize) -> usize {
        batch.saturating_mul(self.layout.output_dim(seq_len))
    }

    /// Runs with caller-owned scratch memory (no allocation once `ws` has grown).
    pub fn run_with(&self, ws: &mut Workspace, input: &Input, output: &mut [f32]) -> Result<()> {
        bert::forward(&self.layout, self.storage.bytes(), self.kernel, input, ws, output)
    }

    /// Runs on a batch of token ids; `output` gets `output_len(batch, seq_len)` floats.
    pub fn run(
        &self,
        input_ids: &[i32],
        token_type_ids: Option<&[i32]>,
        attention_mask: Option<&[i32]>,
        batch: usize,
        seq_len: usize,
        output: &mut [f32],
    ) -> Result<()> {
        let input = Input { input_ids, token_type_ids, attention_mask, batch, seq_len };
        #[cfg(feature = "std")]
        {
            // Scratch memory is pooled so repeated and concurrent runs reuse it.
            let mut ws = self.pool.lock().map(|mut p| p.pop()).unwrap_or(None).unwrap_or_default();
            let result = self.run_with(&mut ws, &input, output);
            if let Ok(mut p) = self.pool.lock() {
                p.push(ws);
            }
            result
        }
        #[cfg(not(feature = "std"))]
        {
            let mut ws = Workspace::new();
            self.run_with(&mut ws, &input, output)
        }
    }
}

#[cfg(feature = "std")]
impl Model<'static> {
    /// Opens a model file by memory-mapping it; nothing is read eagerly beyond the header,
    /// metadata, directory and vocabulary, so load time does not grow with the weights.
    pub fn open(path: impl AsRef<std::path::Path>, options: &Options) -> Result<Model<'static>> {
        let path = path.as_ref();
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => bail!(Status::Io, "cannot open {}: {e}", path.display()),
        };
        // SAFETY: the map is read-only and private to this model. Like every mmap-based loader we
        // rely on the file not being truncated or rewritten while mapped (documented in the API).
        let map = match unsafe { memmap2::Mmap::map(&file) } {
            Ok(m) => m,
            Err(e) => bail!(Status::Io, "cannot memory-map {}: {e}", path.display()),
        };
        Self::from_storage(Storage::Mapped(map), options)
    }
}

#[cfg(feature = "std")]
fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

#[cfg(not(feature = "std"))]
fn default_threads() -> usize {
    1
}
