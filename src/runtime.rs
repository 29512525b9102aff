//! [`Model`]: an opened model file (memory map or caller buffer), its validated layout, the
//! kernel chosen for it, and reusable scratch memory. Immutable after creation and shareable
//! between threads.

use alloc::collections::BTreeMap;
use alloc::string::String;
#[cfg(feature = "text")]
use alloc::vec::Vec;

use crate::bert::{self, Input, Workspace};
use crate::error::{bail, Result, Status};
use crate::format::{FileIndex, MetaValue, TensorInfo};
use crate::kernels::Kernel;
use crate::model::{choose_kernel, Config, HeadConfig, ModelLayout, Options};
#[cfg(feature = "text")]
use crate::model::{cast, HeadKind};
use crate::tokenizer::{TokenizerSettings, Truncation};
#[cfg(feature = "text")]
use crate::tokenizer::{Charsmap, Encoding, Merges, TokenizeError, Tokenizer, Unigram, Vocab};

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

/// Most worker threads one model may have (`Options::num_threads`).
pub const MAX_THREADS: usize = 1024;

/// A loaded model. `'a` is the lifetime of a caller-provided buffer (`'static` for files).
pub struct Model<'a> {
    // Declared before `storage` so it is dropped first: it borrows the storage's bytes.
    #[cfg(feature = "text")]
    tokenizer: Tokenizer<'a>,
    storage: Storage<'a>,
    index: FileIndex,
    layout: ModelLayout,
    kernel: Kernel,
    num_threads: usize,
    max_seq_len: usize,
    truncation: Truncation,
    #[cfg(feature = "std")]
    pool: std::sync::Mutex<alloc::vec::Vec<Workspace>>,
    /// Worker threads for one run (None when running on one thread).
    #[cfg(feature = "std")]
    threads: Option<crate::threads::ThreadPool>,
}

impl<'a> Model<'a> {
    /// Opens a model held in memory. Nothing is copied: `bytes` must stay alive and unchanged
    /// as long as the model, and must start at a 4-byte-aligned address. (With
    /// [`Options::huge_pages`] the model works on its own copy, so neither applies.)
    pub fn from_bytes(bytes: &'a [u8], options: &Options) -> Result<Model<'a>> {
        Self::from_storage(Storage::Borrowed(bytes), options)
    }

    fn from_storage(storage: Storage<'a>, options: &Options) -> Result<Model<'a>> {
        #[cfg(feature = "std")]
        let storage = match storage {
            Storage::Borrowed(b) if options.huge_pages && !b.is_empty() => Storage::Mapped(huge_page_copy(b.len(), |m| {
                m.copy_from_slice(b);
                Ok(())
            })?),
            other => other,
        };
        // SAFETY: the bytes are either the caller's `&'a` buffer or a memory map owned by the
        // returned model. A map's address does not change when the model moves, and the only
        // value borrowing it beyond this function (`tokenizer`) is dropped before `storage`;
        // `Model::tokenizer` hands it out only for the lifetime of `&self`.
        let bytes: &'a [u8] = unsafe { &*(storage.bytes() as *const [u8]) };
        if !(bytes.as_ptr() as usize).is_multiple_of(4) {
            bail!(Status::MisalignedBuffer, "model buffer starts at {:p}, which is not 4-byte aligned", bytes.as_ptr());
        }
        let kernel = choose_kernel(options.kernel)?;
        let index = FileIndex::parse(bytes, options.verify_checksum)?;
        let mut layout = ModelLayout::resolve(&index, bytes)?;
        layout.find_narrow_weights(bytes, kernel);
        #[cfg(feature = "text")]
        let tables = &layout.tokenizer_tables;
        #[cfg(feature = "text")]
        let vocab = Vocab::from_parts(cast(bytes, &tables.vocab_offsets), &bytes[tables.vocab_bytes.clone()], cast(bytes, &tables.vocab_hash))?;
        #[cfg(feature = "text")]
        let tokenizer = match (&tables.bpe_merges, &tables.unigram) {
            (Some(range), _) => Tokenizer::with_merges(vocab, Merges::from_table(cast(bytes, range), vocab.len())?, layout.tokenizer.clone())?,
            (None, Some(u)) => {
                let charsmap = match &u.charsmap {
                    Some(range) => Some(Charsmap::from_bytes(&bytes[range.clone()])?),
                    None => None,
                };
                let unigram = Unigram::new(vocab.len(), cast(bytes, &u.scores), charsmap, u.collapse_spaces)?;
                Tokenizer::with_unigram(vocab, unigram, layout.tokenizer.clone())?
            }
            (None, None) => Tokenizer::new(vocab, layout.tokenizer.clone())?,
        };
        if options.max_seq_len > layout.config.max_position_embeddings {
            bail!(Status::InvalidArgument, "max_seq_len {} exceeds the model maximum {}", options.max_seq_len, layout.config.max_position_embeddings);
        }
        // Each thread is an OS thread with its own stack: refuse absurd counts up front.
        if options.num_threads > MAX_THREADS {
            bail!(Status::InvalidArgument, "num_threads {} exceeds the limit {MAX_THREADS}", options.num_threads);
        }
        let num_threads = if options.num_threads == 0 { default_threads() } else { options.num_threads };
        Ok(Model {
            #[cfg(feature = "text")]
            tokenizer,
            max_seq_len: if options.max_seq_len == 0 { layout.text_limit.unwrap_or(layout.config.max_position_embeddings) } else { options.max_seq_len },
            truncation: options.truncation.unwrap_or(if layout.text_limit.is_some() { Truncation::LongestFirst } else { Truncation::Error }),
            storage,
            index,
            layout,
            kernel,
            num_threads,
            #[cfg(feature = "std")]
            pool: std::sync::Mutex::new(alloc::vec::Vec::new()),
            #[cfg(feature = "std")]
            threads: (num_threads > 1).then(|| crate::threads::ThreadPool::new(num_threads)),
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

    /// Upper bound of the heap memory one `run` of `batch` sequences of `seq_len` tokens
    /// allocates (scratch buffers, sized exactly and kept in the model's pool for reuse).
    /// Errors for the sizes `run` rejects. `run_text` needs this for its padded batch plus
    /// 12 bytes per token for the tokenized input.
    pub fn working_memory(&self, batch: usize, seq_len: usize) -> Result<usize> {
        if batch == 0 || seq_len == 0 {
            bail!(Status::InvalidArgument, "batch ({batch}) and seq_len ({seq_len}) must be at least 1");
        }
        if seq_len > self.layout.config.max_position_embeddings {
            bail!(Status::SequenceTooLong, "seq_len {seq_len} exceeds the model maximum {}", self.layout.config.max_position_embeddings);
        }
        match bert::working_memory(&self.layout, batch, seq_len, self.parallel().threads(), self.kernel) {
            Some(n) if batch.saturating_mul(seq_len) <= u32::MAX as usize => Ok(n),
            _ => bail!(Status::InvalidArgument, "batch {batch} x seq_len {seq_len} is too large"),
        }
    }

    /// Runs with caller-owned scratch memory (no allocation once `ws` has grown).
    // Not inlined into callers: a whole forward pass (and the firmware stage counts q8bert's
    // code by symbol).
    #[inline(never)]
    pub fn run_with(&self, ws: &mut Workspace, input: &Input, output: &mut [f32]) -> Result<()> {
        bert::forward(&self.layout, self.storage.bytes(), self.kernel, self.parallel(), input, ws, output)
    }

    fn parallel(&self) -> &dyn bert::Parallel {
        #[cfg(feature = "std")]
        if let Some(pool) = &self.threads {
            return pool;
        }
        &bert::Serial
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
        let input = Input { input_ids, token_type_ids, attention_mask, batch, seq_len, pooling_skip: 0 };
        self.with_workspace(|ws| self.run_with(ws, &input, output))
    }

    /// Calls `f` with pooled scratch memory, so repeated and concurrent runs reuse it.
    fn with_workspace<R>(&self, f: impl FnOnce(&mut Workspace) -> R) -> R {
        #[cfg(feature = "std")]
        {
            let mut ws = self.pool.lock().map(|mut p| p.pop()).unwrap_or(None).unwrap_or_default();
            let result = f(&mut ws);
            if let Ok(mut p) = self.pool.lock() {
                p.push(ws);
            }
            result
        }
        #[cfg(not(feature = "std"))]
        {
            f(&mut Workspace::new())
        }
    }

    /// What text input longer than `max_seq_len` does.
    pub fn truncation(&self) -> Truncation {
        self.truncation
    }

    /// Longest token sequence accepted for text input (special tokens included).
    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

}

/// Text input: tokenization and the text runs (the `text` feature, on with `std`).
#[cfg(feature = "text")]
impl<'a> Model<'a> {
    /// The model's tokenizer (WordPiece, byte-level BPE or Unigram; vocabulary and settings
    /// from the file).
    pub fn tokenizer(&self) -> &Tokenizer<'_> {
        &self.tokenizer
    }

    /// Tokenizes one text or text pair into `[CLS] a [SEP] (b [SEP])` with the model's
    /// truncation policy and `max_seq_len`.
    pub fn encode(&self, text_a: &str, text_b: Option<&str>) -> Result<Encoding> {
        let mut enc = Encoding::default();
        self.encode_into(text_a, text_b, self.max_seq_len, self.truncation, &mut enc)?;
        Ok(enc)
    }

    /// Like [`Model::encode`] with an explicit length limit and policy, reusing `out`.
    pub fn encode_into(&self, text_a: &str, text_b: Option<&str>, max_len: usize, truncation: Truncation, out: &mut Encoding) -> Result<()> {
        self.tokenizer.encode_into(text_a, text_b, max_len, truncation, out).map_err(tokenize_error)
    }

    /// Floats `run_text` writes for `batch` texts (token-state models are padded to `max_seq_len`).
    pub fn text_output_len(&self, batch: usize) -> usize {
        match self.layout.head.kind {
            HeadKind::TokenStates => self.output_len(batch, self.max_seq_len),
            _ => self.output_len(batch, 1),
        }
    }

    /// Tokenizes and runs a batch of texts (or text pairs when `texts_b` is given), with the
    /// model's default prompt if it has one (as sentence-transformers' `encode`).
    pub fn run_text(&self, texts_a: &[&str], texts_b: Option<&[&str]>, output: &mut [f32]) -> Result<()> {
        self.run_text_prompt(Prompt::Default, texts_a, texts_b, output)
    }

    /// The model's named prompts, (name, text), as `config_sentence_transformers.json` gave them.
    pub fn prompts(&self) -> &[(String, String)] {
        &self.layout.prompts
    }

    /// The name of the prompt [`Model::run_text`] uses when none is named, if any.
    pub fn default_prompt_name(&self) -> Option<&str> {
        self.layout.default_prompt.map(|i| self.layout.prompts[i].0.as_str())
    }

    /// The text `prompt` stands for ("" for none); an unknown name is an error listing the names.
    pub fn prompt_text<'s>(&'s self, prompt: Prompt<'s>) -> Result<&'s str> {
        match prompt {
            Prompt::Default => Ok(self.layout.default_prompt.map_or("", |i| self.layout.prompts[i].1.as_str())),
            Prompt::None => Ok(""),
            Prompt::Text(t) => Ok(t),
            Prompt::Name(name) => match self.layout.prompts.iter().find(|(n, _)| n == name) {
                Some((_, text)) => Ok(text),
                None if self.layout.prompts.is_empty() => bail!(Status::InvalidArgument, "prompt {name:?}: this model has no named prompts"),
                None => {
                    let names: Vec<&str> = self.layout.prompts.iter().map(|(n, _)| n.as_str()).collect();
                    bail!(Status::InvalidArgument, "prompt {name:?} is not one of this model's prompts: {}", names.join(", "))
                }
            },
        }
    }

    /// [`Model::run_text`] with a chosen prompt, put in front of every first text as
    /// sentence-transformers does (`prompt + text`, then tokenized and truncated together). If
    /// the model's pooling leaves the prompt out (`include_prompt: false`), [CLS] and the
    /// prompt's own tokens are not pooled.
    pub fn run_text_prompt(&self, prompt: Prompt<'_>, texts_a: &[&str], texts_b: Option<&[&str]>, output: &mut [f32]) -> Result<()> {
        let prompt = self.prompt_text(prompt)?;
        if prompt.is_empty() {
            return self.run_text_skip(texts_a, texts_b, 0, output);
        }
        // sentence-transformers' prompt_length: the prompt's tokens with [CLS], without [SEP].
        let skip = if self.layout.head.include_prompt { 0 } else { self.encode(prompt, None)?.ids.len() - 1 };
        let mut joined = Vec::new();
        if joined.try_reserve_exact(texts_a.len()).is_err() {
            bail!(Status::OutOfMemory, "cannot allocate {} prompted texts", texts_a.len());
        }
        joined.extend(texts_a.iter().map(|t| alloc::format!("{prompt}{t}")));
        let refs: Vec<&str> = joined.iter().map(String::as_str).collect();
        self.run_text_skip(&refs, texts_b, skip, output)
    }

    fn run_text_skip(&self, texts_a: &[&str], texts_b: Option<&[&str]>, pooling_skip: usize, output: &mut [f32]) -> Result<()> {
        let batch = texts_a.len();
        if batch == 0 {
            bail!(Status::InvalidArgument, "no texts given");
        }
        if let Some(b) = texts_b {
            if b.len() != batch {
                bail!(Status::InvalidArgument, "{} first texts but {} second texts", batch, b.len());
            }
        }
        let needed = self.text_output_len(batch);
        if output.len() < needed {
            bail!(Status::BufferTooSmall, "output has room for {} floats, {needed} are needed", output.len());
        }
        self.with_workspace(|ws| {
            let mut text = core::mem::take(&mut ws.text);
            let result = (|| {
                text.encodings.resize_with(batch, Encoding::default);
                let mut seq_len = 1;
                for (i, enc) in text.encodings.iter_mut().enumerate() {
                    let b = texts_b.map(|b| b[i]);
                    self.tokenizer.encode_into(texts_a[i], b, self.max_seq_len, self.truncation, enc).map_err(|e| {
                        let mut err = tokenize_error(e);
                        err.message = alloc::format!("text {i}: {}", err.message);
                        err
                    })?;
                    seq_len = seq_len.max(enc.ids.len());
                }
                if self.layout.head.kind == HeadKind::TokenStates {
                    seq_len = self.max_seq_len;
                }
                let pad = self.layout.tokenizer.pad_id as i32;
                text.ids.clear();
                text.types.clear();
                text.mask.clear();
                let total = batch.saturating_mul(seq_len);
                for v in [&mut text.ids, &mut text.types, &mut text.mask] {
                    if v.try_reserve_exact(total).is_err() {
                        bail!(Status::OutOfMemory, "cannot allocate the token arrays of {batch} texts x {seq_len} tokens");
                    }
                }
                for enc in &text.encodings[..batch] {
                    let n = enc.ids.len();
                    text.ids.extend_from_slice(&enc.ids);
                    text.types.extend_from_slice(&enc.type_ids);
                    text.mask.extend(core::iter::repeat_n(1, n));
                    text.ids.extend(core::iter::repeat_n(pad, seq_len - n));
                    text.types.extend(core::iter::repeat_n(0, seq_len - n));
                    text.mask.extend(core::iter::repeat_n(0, seq_len - n));
                }
                let input = Input { input_ids: &text.ids, token_type_ids: Some(&text.types), attention_mask: Some(&text.mask), batch, seq_len, pooling_skip };
                self.run_with(ws, &input, output)
            })();
            ws.text = text;
            result
        })
    }
}

/// Which prompt a text call puts in front of its texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt<'p> {
    /// The model's default prompt (`default_prompt_name`), or none if it has none.
    Default,
    /// No prompt, even if the model has a default.
    None,
    /// One of the model's named prompts ([`Model::prompts`]).
    Name(&'p str),
    /// This text, as sentence-transformers' `encode(prompt=...)`.
    Text(&'p str),
}

#[cfg(feature = "text")]
fn tokenize_error(e: TokenizeError) -> crate::Error {
    match e {
        TokenizeError::TooLong { needed, max } => crate::Error::new(
            Status::SequenceTooLong,
            alloc::format!("the text needs {needed} tokens, the limit is {max} (enable truncation to cut it)"),
        ),
        other => crate::Error::new(Status::InvalidArgument, alloc::format!("{other}")),
    }
}

#[cfg(feature = "std")]
impl Model<'static> {
    /// Opens a model file by memory-mapping it; nothing is read eagerly beyond the header,
    /// metadata, directory and vocabulary, so load time does not grow with the weights. (With
    /// [`Options::huge_pages`] the whole file is read into a private copy instead.)
    pub fn open(path: impl AsRef<std::path::Path>, options: &Options) -> Result<Model<'static>> {
        let path = path.as_ref();
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => bail!(Status::Io, "cannot open {}: {e}", path.display()),
        };
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => bail!(Status::Io, "cannot read the metadata of {}: {e}", path.display()),
        };
        // Mapping a directory fails with "No such device"; say what the path is instead.
        if meta.is_dir() {
            bail!(
                Status::Io,
                "{} is a directory, not a .q8b model file; if it is a Hugging Face model directory, convert it with `trainer quantize --model {} --output model.q8b`",
                path.display(),
                path.display()
            );
        }
        // `huge_pages`: read into the copy, never mapping the file (whose pages would otherwise
        // count towards this process's memory beside the copy while it is made).
        // (An empty file takes the map path, which reports it.)
        let len = meta.len();
        if options.huge_pages && len > 0 {
            let Ok(len) = usize::try_from(len) else { bail!(Status::OutOfMemory, "{} is {len} bytes, more than this platform can address", path.display()) };
            let copy = huge_page_copy(len, |m| std::io::Read::read_exact(&mut &file, m))?;
            return Self::from_storage(Storage::Mapped(copy), options);
        }
        // SAFETY: the map is read-only and private to this model. Like every mmap-based loader we
        // rely on the file not being truncated or rewritten while mapped (documented in the API).
        let map = match unsafe { memmap2::Mmap::map(&file) } {
            Ok(m) => m,
            Err(e) => bail!(Status::Io, "cannot memory-map {}: {e}", path.display()),
        };
        Self::from_storage(Storage::Mapped(map), options)
    }
}

/// `len` bytes of private anonymous memory advised for transparent huge pages where Linux
/// offers them, filled by `fill`, then made read-only ([`Options::huge_pages`]). A mapped file
/// gets 4 KiB pages on ext4 and most file systems: a BERT-base's 110 MB span ~27,000 of them,
/// against 53 pages of 2 MiB.
#[cfg(feature = "std")]
fn huge_page_copy(len: usize, fill: impl FnOnce(&mut [u8]) -> std::io::Result<()>) -> Result<memmap2::Mmap> {
    let mut map = match memmap2::MmapMut::map_anon(len) {
        Ok(m) => m,
        Err(e) => bail!(Status::OutOfMemory, "cannot allocate {len} bytes to copy the model into (huge_pages): {e}"),
    };
    // Best effort, before the pages are touched: without THP (disabled, or another OS) the copy
    // still runs, in ordinary pages.
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage);
    if let Err(e) = fill(&mut map) {
        bail!(Status::Io, "cannot read the model into memory (huge_pages): {e}");
    }
    match map.make_read_only() {
        Ok(m) => Ok(m),
        Err(e) => bail!(Status::Io, "cannot make the model copy read-only: {e}"),
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
