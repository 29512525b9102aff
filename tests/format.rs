//! Malformed model files: each broken rule is rejected with its own status, never a panic.
//! Files are made from a valid tiny model, either by patching bytes (then resealing the
//! checksums, so the rule under test is what trips) or by rewriting it with edited contents.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{tiny_config, Aligned, FpModel};
use q8bert::builder::Head;
use q8bert::format::writer::{reseal, FileWriter};
use q8bert::format::{DType, FileIndex, MetaValue};
use q8bert::{Model, Options, Status};

/// Records the largest single allocation made by the calling thread while tracking is on, to
/// show that no file makes the loader allocate more than the file's own size.
struct Counting;

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: allocations during thread teardown happen after the TLS is gone.
    if TRACK.try_with(|t| t.get()).unwrap_or(false) {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }
}

// SAFETY: forwards to the system allocator unchanged; the bookkeeping does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Opens `buf` and returns the status and the largest single allocation the attempt made.
fn open_counted(buf: &Aligned, verify: bool) -> (Status, usize) {
    LARGEST.with(|l| l.set(0));
    TRACK.with(|t| t.set(true));
    let r = Model::from_bytes(buf.bytes(), &Options { verify_checksum: verify, num_threads: 1, ..Default::default() });
    let status = r.as_ref().err().map_or(Status::Ok, |e| e.status);
    drop(r);
    TRACK.with(|t| t.set(false));
    (status, LARGEST.with(|l| l.get()))
}

fn valid() -> Vec<u8> {
    FpModel::random(tiny_config(), Head::Classification { labels: vec!["a".into(), "b".into()] }, 3).bytes()
}

fn open(bytes: &[u8], verify: bool) -> Result<(), q8bert::Error> {
    let buf = Aligned::new(bytes);
    Model::from_bytes(buf.bytes(), &Options { verify_checksum: verify, ..Default::default() }).map(|_| ())
}

fn status(bytes: &[u8]) -> Status {
    match open(bytes, false) {
        Ok(()) => Status::Ok,
        Err(e) => e.status,
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Patches the file and reseals its checksums.
fn patched(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = valid();
    edit(&mut b);
    reseal(&mut b);
    b
}

/// Byte position of the fields of directory entry `i`: (entry start, dtype, rank, first dim, offset).
fn entry_fields(b: &[u8], i: usize) -> (usize, usize, usize, usize, usize) {
    let mut p = u64_at(b, 48) as usize;
    for k in 0..=i {
        let start = p;
        let name_len = u32::from_le_bytes(b[p..p + 4].try_into().unwrap()) as usize;
        let dtype = p + 4 + name_len;
        let rank_at = dtype + 4;
        let rank = u32::from_le_bytes(b[rank_at..rank_at + 4].try_into().unwrap()) as usize;
        let dims = rank_at + 4;
        let offset = dims + 8 * rank;
        if k == i {
            return (start, dtype, rank_at, dims, offset);
        }
        p = offset + 16;
    }
    unreachable!()
}

struct Entry {
    name: String,
    dtype: DType,
    dims: Vec<u64>,
    bytes: Vec<u8>,
}

/// Rewrites the valid model after editing its tensor list and metadata.
fn rewritten(edit: impl FnOnce(&mut Vec<Entry>, &mut Vec<(String, MetaValue)>)) -> Vec<u8> {
    rewritten_as(0, edit)
}

/// `rewritten`, declaring format version 1.`minor`.
fn rewritten_as(minor: u16, edit: impl FnOnce(&mut Vec<Entry>, &mut Vec<(String, MetaValue)>)) -> Vec<u8> {
    rewrite(&valid(), minor, edit)
}

/// The file `b` written again as version 1.`minor` after editing its tensors and metadata.
fn rewrite(b: &[u8], minor: u16, edit: impl FnOnce(&mut Vec<Entry>, &mut Vec<(String, MetaValue)>)) -> Vec<u8> {
    let index = FileIndex::parse(b, true).unwrap();
    let mut tensors: Vec<Entry> = index
        .tensors
        .iter()
        .map(|t| Entry { name: t.name.clone(), dtype: t.dtype, dims: t.dims.clone(), bytes: b[t.range.clone()].to_vec() })
        .collect();
    let mut meta: Vec<(String, MetaValue)> = index.metadata.into_iter().collect();
    edit(&mut tensors, &mut meta);
    let mut w = FileWriter::new();
    w.version_minor(minor);
    for (k, v) in meta {
        w.metadata(&k, v);
    }
    for t in tensors {
        w.tensor(&t.name, t.dtype, &t.dims, t.bytes);
    }
    w.to_bytes()
}

fn find<'a>(t: &'a mut [Entry], name: &str) -> &'a mut Entry {
    t.iter_mut().find(|e| e.name == name).unwrap()
}

#[test]
fn valid_file_opens_with_and_without_full_verification() {
    let b = valid();
    open(&b, false).unwrap();
    open(&b, true).unwrap();
    // The rewrite helper itself produces a valid file when nothing is edited.
    open(&rewritten(|_, _| {}), true).unwrap();
}

/// A Hugging Face model directory is the usual wrong path: say so and how to convert it (mapping
/// a directory would report "No such device").
#[test]
fn a_directory_is_refused_with_the_conversion_command() {
    let dir = std::env::temp_dir().join(format!("q8bert-format-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let e = Model::open(&dir, &Options::default()).err().expect("a directory is not a model");
    assert_eq!(e.status, Status::Io);
    assert!(e.message.contains(&format!("{} is a directory", dir.display())), "{}", e.message);
    assert!(e.message.contains(&format!("trainer quantize --model {} --output model.q8b", dir.display())), "{}", e.message);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn truncation_at_every_offset_is_rejected() {
    let b = valid();
    let mut statuses = std::collections::BTreeSet::new();
    for len in 0..b.len() {
        let (s, largest) = open_counted(&Aligned::new(&b[..len]), false);
        assert_ne!(s, Status::Ok, "truncated to {len} bytes was accepted");
        assert!(largest <= len.max(1024), "truncated to {len} bytes: an allocation of {largest} bytes");
        statuses.insert(s as u32);
    }
    assert!(status(&b[..10]) == Status::FileTooShort);
    eprintln!("{} truncations rejected with statuses {statuses:?}", b.len());
}

fn header_cases() -> Vec<(&'static str, Vec<u8>, Status)> {
    vec![
        ("bad magic", patched(|b| b[0] = b'X'), Status::BadMagic),
        ("major version 2", patched(|b| b[8] = 2), Status::UnsupportedVersion),
        ("newer minor version", patched(|b| b[10] = q8bert::format::VERSION_MINOR as u8 + 1), Status::UnsupportedVersion),
        ("header size", patched(|b| put_u32(b, 12, 64)), Status::BadHeader),
        ("unknown flag", patched(|b| put_u32(b, 16, 1)), Status::BadHeader),
        ("alignment", patched(|b| put_u32(b, 20, 32)), Status::BadHeader),
        ("reserved bytes", patched(|b| b[100] = 1), Status::BadHeader),
        ("metadata offset", patched(|b| put_u64(b, 32, 136)), Status::SectionOutOfBounds),
        ("metadata size overflow", patched(|b| put_u64(b, 40, u64::MAX - 10)), Status::SectionOutOfBounds),
        ("directory past end", patched(|b| put_u64(b, 56, 1 << 40)), Status::SectionOutOfBounds),
        ("data offset not aligned dir end", patched(|b| {
            let v = u64_at(b, 64);
            put_u64(b, 64, v + 64)
        }), Status::SectionOutOfBounds),
        ("data size overflow", patched(|b| put_u64(b, 72, u64::MAX)), Status::SectionOutOfBounds),
        ("trailing bytes", patched(|b| {
            let v = u64_at(b, 72);
            put_u64(b, 72, v - 64)
        }), Status::HoleOrTrailingBytes),
        ("metadata count too large", patched(|b| put_u32(b, 24, u32::MAX)), Status::BadMetadata),
        ("tensor count too large", patched(|b| put_u32(b, 28, u32::MAX)), Status::BadTensorEntry),
    ]
}

#[test]
fn checksums_are_checked() {
    let b = valid();
    // A header byte changed without resealing: the header checksum catches it.
    let mut h = b.clone();
    let name_byte = u64_at(&h, 48) as usize + 4;
    h[name_byte] ^= 1;
    assert_eq!(status(&h), Status::ChecksumMismatch);
    // A payload byte changed: accepted by the default O(header) load, rejected by full verification.
    // (The first data byte is an int8 word-embedding weight, which load does not read.)
    let mut p = b.clone();
    let first_weight = u64_at(&p, 64) as usize;
    p[first_weight] ^= 0x10;
    assert_eq!(status(&p), Status::Ok);
    assert_eq!(open(&p, true).unwrap_err().status, Status::ChecksumMismatch);
    // The stored checksum itself corrupted.
    let mut c = b.clone();
    c[81] ^= 0xff;
    assert_eq!(status(&c), Status::ChecksumMismatch);
}

fn directory_cases() -> Vec<(&'static str, Vec<u8>, Status)> {
    vec![
        ("unknown dtype", patched(|b| {
            let (_, dtype, ..) = entry_fields(b, 0);
            put_u32(b, dtype, 99)
        }), Status::BadTensorEntry),
        ("rank 0", patched(|b| {
            let (_, _, rank, ..) = entry_fields(b, 0);
            put_u32(b, rank, 0)
        }), Status::BadTensorEntry),
        ("zero dimension", patched(|b| {
            let (_, _, _, dim, _) = entry_fields(b, 0);
            put_u64(b, dim, 0)
        }), Status::BadTensorEntry),
        ("byte size disagrees with shape", patched(|b| {
            let (_, _, _, _, off) = entry_fields(b, 0);
            let n = u64_at(b, off + 8);
            put_u64(b, off + 8, n + 1)
        }), Status::BadTensorEntry),
        ("dimension overflow", patched(|b| {
            let (_, _, _, dim, _) = entry_fields(b, 0);
            put_u64(b, dim, u64::MAX / 2)
        }), Status::BadTensorEntry),
        ("offset out of range", patched(|b| {
            let (_, _, _, _, off) = entry_fields(b, 1);
            put_u64(b, off, 1 << 50)
        }), Status::TensorOutOfBounds),
        ("offset + size overflow", patched(|b| {
            let (_, _, _, _, off) = entry_fields(b, 1);
            put_u64(b, off, u64::MAX - 3)
        }), Status::TensorOutOfBounds),
        ("misaligned offset", patched(|b| {
            let (_, _, _, _, off) = entry_fields(b, 1);
            let v = u64_at(b, off);
            put_u64(b, off, v + 4)
        }), Status::MisalignedTensor),
        ("overlapping tensors", patched(|b| {
            let (_, _, _, _, off) = entry_fields(b, 1);
            put_u64(b, off, 0)
        }), Status::OverlappingTensors),
        ("gap between tensors", patched(|b| {
            let (_, _, _, _, off) = entry_fields(b, 1);
            let v = u64_at(b, off);
            put_u64(b, off, v + 64)
        }), Status::HoleOrTrailingBytes),
        ("non-zero padding", patched(|b| {
            // Tensor 1 is a 4-byte scale: the 60 bytes after it are alignment padding.
            let data = u64_at(b, 64) as usize;
            let (_, _, _, _, off) = entry_fields(b, 1);
            let start = data + u64_at(b, off) as usize + u64_at(b, off + 8) as usize;
            b[start] = 7;
        }), Status::HoleOrTrailingBytes),
        ("name not ASCII", patched(|b| {
            let (start, ..) = entry_fields(b, 0);
            b[start + 4] = b' ';
        }), Status::BadString),
    ]
}

/// Adds the int8-attention scales of layer 0 (`None` leaves one out).
fn attention_scales(t: &mut Vec<Entry>, query: Option<Vec<u8>>, key: Option<Vec<u8>>) {
    for (name, bytes) in [("query_scale", query), ("key_scale", key)] {
        if let Some(bytes) = bytes {
            let dims = vec![bytes.len() as u64 / 4];
            t.push(Entry { name: format!("encoder.layer.0.attention.{name}"), dtype: DType::F32, dims, bytes });
        }
    }
}

/// Adds named prompts (and a default) to the metadata.
fn prompts(m: &mut Vec<(String, MetaValue)>, names: &[&str], texts: &[&str], default: Option<&str>) {
    let list = |v: &[&str]| MetaValue::StrArray(v.iter().map(|s| s.to_string()).collect());
    m.push(("tokenizer.prompt_names".into(), list(names)));
    m.push(("tokenizer.prompt_texts".into(), list(texts)));
    if let Some(d) = default {
        m.push(("tokenizer.default_prompt_name".into(), MetaValue::Str(d.into())));
    }
}

/// Makes the file's tokenizer byte-level BPE with these merge rows (`[n, 4]` u32).
fn bpe(t: &mut Vec<Entry>, m: &mut Vec<(String, MetaValue)>, rows: &[u32], dims: Vec<u64>) {
    m.push(("tokenizer.kind".into(), MetaValue::Str("byte_level_bpe".into())));
    m.push(("tokenizer.add_prefix_space".into(), MetaValue::Bool(false)));
    t.push(Entry { name: "tokenizer.bpe.merges".into(), dtype: DType::U32, dims, bytes: rows.iter().flat_map(|v| v.to_le_bytes()).collect() });
}

/// A byte-level BPE file opens and tokenizes with its merges (a merge of ids 5 and 6 into 7).
#[test]
fn byte_level_bpe_tokenizer_loads_from_the_file() {
    let b = rewritten_as(8, |t, m| bpe(t, m, &[5, 6, 7, 0, 7, 8, 9, 1], vec![2, 4]));
    let model = Model::from_bytes(&b, &Options::default()).unwrap();
    let tok = model.tokenizer();
    assert!(matches!(tok.settings().kind, q8bert::tokenizer::TokenizerKind::ByteLevelBpe { add_prefix_space: false }));
    assert_eq!(tok.merges().map(|m| m.len()), Some(2));
}

/// Makes the file's tokenizer SentencePiece Unigram: `score` for every piece (one row too few
/// with `short`), and a charsmap if given.
fn unigram(t: &mut Vec<Entry>, m: &mut Vec<(String, MetaValue)>, score: f64, short: bool, charsmap: Option<Vec<u8>>) {
    let v = find(t, "tokenizer.vocab.offsets").dims[0] as usize - 1 - short as usize;
    m.push(("tokenizer.kind".into(), MetaValue::Str("unigram".into())));
    m.push(("tokenizer.unigram.collapse_spaces".into(), MetaValue::Bool(true)));
    let bytes = (0..v).flat_map(|_| score.to_bits().to_le_bytes()).collect();
    t.push(Entry { name: "tokenizer.unigram.scores".into(), dtype: DType::U32, dims: vec![v as u64, 2], bytes });
    if let Some(map) = charsmap {
        t.push(Entry { name: "tokenizer.unigram.charsmap".into(), dtype: DType::U8, dims: vec![map.len() as u64], bytes: map });
    }
}

/// The smallest charsmap: a one-unit trie that maps nothing, and no replacements.
const EMPTY_CHARSMAP: [u8; 8] = [4, 0, 0, 0, 0, 0, 0, 0];

/// A Unigram file opens and tokenizes: with equal scores the best path is the fewest pieces.
#[test]
fn unigram_tokenizer_loads_from_the_file() {
    let b = rewritten_as(9, |t, m| unigram(t, m, -1.0, false, Some(EMPTY_CHARSMAP.to_vec())));
    let model = Model::from_bytes(&b, &Options::default()).unwrap();
    let tok = model.tokenizer();
    assert_eq!(tok.settings().kind, q8bert::tokenizer::TokenizerKind::Unigram);
    let u = tok.unigram().unwrap();
    assert!(u.charsmap.is_some() && u.collapse_spaces);
    let enc = tok.encode("x", None, 16, q8bert::tokenizer::Truncation::Error).unwrap();
    assert_eq!(enc.type_ids, vec![0; enc.ids.len()]);
    assert_eq!(enc.ids.first(), Some(&(tok.settings().cls_id as i32)));
}

fn model_cases() -> Vec<(&'static str, Vec<u8>, Status)> {
    let merges = |rows: &'static [u32], dims: Vec<u64>| move |t: &mut Vec<Entry>, m: &mut Vec<(String, MetaValue)>| bpe(t, m, rows, dims);
    vec![
        ("BPE tokenizer in a 1.7 file", rewritten_as(7, merges(&[5, 6, 7, 0], vec![1, 4])), Status::UnsupportedVersion),
        ("unknown tokenizer kind", rewritten_as(9, |_, m| m.push(("tokenizer.kind".into(), MetaValue::Str("sentencepiece_bpe".into())))), Status::BadConfig),
        ("Unigram tokenizer in a 1.8 file", rewritten_as(8, |t, m| unigram(t, m, -1.0, false, None)), Status::UnsupportedVersion),
        ("Unigram tokenizer without scores", rewritten_as(9, |t, m| {
            unigram(t, m, -1.0, false, None);
            t.retain(|e| e.name != "tokenizer.unigram.scores");
        }), Status::MissingTensor),
        ("Unigram scores one row short", rewritten_as(9, |t, m| unigram(t, m, -1.0, true, None)), Status::WrongShape),
        ("Unigram score not finite", rewritten_as(9, |t, m| unigram(t, m, f64::NAN, false, None)), Status::BadVocab),
        ("Unigram tokenizer without collapse_spaces", rewritten_as(9, |t, m| {
            unigram(t, m, -1.0, false, None);
            m.retain(|(k, _)| k != "tokenizer.unigram.collapse_spaces");
        }), Status::MissingMetadata),
        ("charsmap trie longer than the charsmap", rewritten_as(9, |t, m| unigram(t, m, -1.0, false, Some(vec![64, 0, 0, 0, 0, 0, 0, 0]))), Status::BadVocab),
        ("charsmap replacements not UTF-8", rewritten_as(9, |t, m| unigram(t, m, -1.0, false, Some([&EMPTY_CHARSMAP[..], &[0xC3, 0x28]].concat()))), Status::BadVocab),
        ("Unigram scores without a Unigram tokenizer", rewritten_as(9, |t, m| {
            unigram(t, m, -1.0, false, None);
            m.retain(|(k, _)| k != "tokenizer.kind");
        }), Status::UnknownTensor),
        ("BPE tokenizer without merges", rewritten_as(8, |t, m| {
            bpe(t, m, &[], vec![0, 4]);
            t.retain(|e| e.name != "tokenizer.bpe.merges");
        }), Status::MissingTensor),
        ("BPE tokenizer without add_prefix_space", rewritten_as(8, |t, m| {
            bpe(t, m, &[5, 6, 7, 0], vec![1, 4]);
            m.retain(|(k, _)| k != "tokenizer.add_prefix_space");
        }), Status::MissingMetadata),
        ("merges of three columns", rewritten_as(8, merges(&[5, 6, 7], vec![1, 3])), Status::WrongShape),
        ("unsorted merges", rewritten_as(8, merges(&[7, 8, 9, 1, 5, 6, 7, 0], vec![2, 4])), Status::BadVocab),
        ("merge id outside the vocabulary", rewritten_as(8, merges(&[5, 6, 1_000_000, 0], vec![1, 4])), Status::BadVocab),
        ("merge rank outside the table", rewritten_as(8, merges(&[5, 6, 7, 1], vec![1, 4])), Status::BadVocab),
        ("merges without a BPE tokenizer", rewritten_as(8, |t, m| {
            bpe(t, m, &[5, 6, 7, 0], vec![1, 4]);
            m.retain(|(k, _)| k != "tokenizer.kind");
        }), Status::UnknownTensor),
        ("int8 attention scales in a 1.0 file", rewritten_as(0, |t, _| attention_scales(t, Some(f32_bytes(20.0)), Some(f32_bytes(20.0)))), Status::UnsupportedVersion),
        ("query scale without key scale", rewritten_as(1, |t, _| attention_scales(t, Some(f32_bytes(20.0)), None)), Status::MissingTensor),
        ("key scale without query scale", rewritten_as(1, |t, _| attention_scales(t, None, Some(f32_bytes(20.0)))), Status::MissingTensor),
        ("zero query scale", rewritten_as(1, |t, _| attention_scales(t, Some(f32_bytes(0.0)), Some(f32_bytes(20.0)))), Status::BadScale),
        ("infinite key scale", rewritten_as(1, |t, _| attention_scales(t, Some(f32_bytes(20.0)), Some(f32_bytes(f32::INFINITY)))), Status::BadScale),
        ("value scale in a 1.0 file", rewritten_as(0, |t, _| t.push(Entry { name: "encoder.layer.1.attention.value_scale".into(), dtype: DType::F32, dims: vec![1], bytes: f32_bytes(30.0) })), Status::UnsupportedVersion),
        ("negative value scale", rewritten_as(1, |t, _| t.push(Entry { name: "encoder.layer.1.attention.value_scale".into(), dtype: DType::F32, dims: vec![1], bytes: f32_bytes(-30.0) })), Status::BadScale),
        ("two query scales", rewritten_as(1, |t, _| attention_scales(t, Some([f32_bytes(1.0), f32_bytes(2.0)].concat()), Some(f32_bytes(20.0)))), Status::WrongShape),
        ("dynamic int8 attention in a 1.5 file", rewritten_as(5, |_, m| m.push(("quant.attention".into(), MetaValue::Str("dynamic_int8".into())))), Status::UnsupportedVersion),
        ("unknown attention scheme", rewritten_as(6, |_, m| m.push(("quant.attention".into(), MetaValue::Str("int4".into())))), Status::BadConfig),
        ("dynamic and static int8 attention", rewritten_as(6, |t, m| {
            attention_scales(t, Some(f32_bytes(20.0)), Some(f32_bytes(20.0)));
            m.push(("quant.attention".into(), MetaValue::Str("dynamic_int8".into())))
        }), Status::BadConfig),
        ("relu pooler in a 1.6 file", rewritten_as(6, |_, m| m.push(("head.pooler.activation".into(), MetaValue::Str("relu".into())))), Status::UnsupportedVersion),
        ("unknown pooler activation", rewritten_as(7, |_, m| m.push(("head.pooler.activation".into(), MetaValue::Str("gelu".into())))), Status::BadConfig),
        ("include_prompt false in a 1.4 file", rewritten_as(4, |_, m| m.push(("head.include_prompt".into(), MetaValue::Bool(false)))), Status::UnsupportedVersion),
        ("default prompt in a 1.4 file", rewritten_as(4, |_, m| prompts(m, &["query"], &["query: "], Some("query"))), Status::UnsupportedVersion),
        ("default prompt that is not a prompt", rewritten_as(5, |_, m| prompts(m, &["query"], &["query: "], Some("passage"))), Status::BadConfig),
        ("prompt names without texts", rewritten_as(0, |_, m| m.push(("tokenizer.prompt_names".into(), MetaValue::StrArray(vec!["query".into()])))), Status::BadConfig),
        ("more prompt names than texts", rewritten_as(0, |_, m| prompts(m, &["query", "passage"], &["query: "], None)), Status::BadConfig),
        ("a prompt name twice", rewritten_as(0, |_, m| prompts(m, &["query", "query"], &["a", "b"], None)), Status::BadConfig),
        ("an empty prompt name", rewritten_as(0, |_, m| prompts(m, &[""], &["a"], None)), Status::BadConfig),
        ("missing tensor", rewritten(|t, _| t.retain(|e| e.name != "encoder.layer.1.intermediate.bias")), Status::MissingTensor),
        ("unknown tensor", rewritten(|t, _| t.push(Entry { name: "extra.tensor".into(), dtype: DType::F32, dims: vec![1], bytes: vec![0; 4] })), Status::UnknownTensor),
        ("duplicate tensor", rewritten(|t, _| {
            let e = find(t, "pooler.bias");
            let dup = Entry { name: e.name.clone(), dtype: e.dtype, dims: e.dims.clone(), bytes: e.bytes.clone() };
            t.push(dup)
        }), Status::DuplicateName),
        ("wrong dtype", rewritten(|t, _| {
            let e = find(t, "pooler.bias");
            e.dtype = DType::F32;
        }), Status::WrongDtype),
        ("wrong shape", rewritten(|t, _| {
            let e = find(t, "embeddings.layer_norm.gamma");
            e.dims = vec![16];
            e.bytes.truncate(64);
        }), Status::WrongShape),
        ("weight scale count not a divisor", rewritten(|t, _| {
            let e = find(t, "pooler.weight_scale");
            e.dims = vec![3];
            e.bytes = [1.0f32; 3].iter().flat_map(|v| v.to_le_bytes()).collect();
        }), Status::WrongShape),
        ("NaN scale", rewritten(|t, _| find(t, "pooler.input_scale").bytes = f32::NAN.to_le_bytes().to_vec()), Status::BadScale),
        ("zero scale", rewritten(|t, _| find(t, "embeddings.word_embeddings.scale").bytes = 0f32.to_le_bytes().to_vec()), Status::BadScale),
        ("negative weight scale", rewritten(|t, _| find(t, "classifier.weight_scale").bytes = (-1f32).to_le_bytes().to_vec()), Status::BadScale),
        ("missing config key", rewritten(|_, m| m.retain(|(k, _)| k != "bert.num_heads")), Status::MissingMetadata),
        ("config key of wrong type", rewritten(|_, m| {
            m.iter_mut().find(|(k, _)| k == "bert.hidden_size").unwrap().1 = MetaValue::Str("32".into())
        }), Status::MissingMetadata),
        ("heads do not divide hidden", rewritten(|_, m| {
            m.iter_mut().find(|(k, _)| k == "bert.num_heads").unwrap().1 = MetaValue::U32(5)
        }), Status::BadConfig),
        ("absurd layer count", rewritten(|_, m| {
            m.iter_mut().find(|(k, _)| k == "bert.num_layers").unwrap().1 = MetaValue::U32(100_000)
        }), Status::BadConfig),
        ("shape vs config", rewritten(|_, m| {
            m.iter_mut().find(|(k, _)| k == "bert.intermediate_size").unwrap().1 = MetaValue::U32(64)
        }), Status::WrongShape),
        ("unknown head", rewritten(|_, m| {
            m.iter_mut().find(|(k, _)| k == "head.kind").unwrap().1 = MetaValue::Str("seq2seq".into())
        }), Status::BadConfig),
        ("special token out of vocabulary", rewritten(|_, m| {
            m.iter_mut().find(|(k, _)| k == "tokenizer.sep_token_id").unwrap().1 = MetaValue::U32(40)
        }), Status::BadSpecialToken),
        ("vocabulary offsets", rewritten(|t, _| {
            let e = find(t, "tokenizer.vocab.offsets");
            e.bytes[4..8].copy_from_slice(&1000u32.to_le_bytes());
        }), Status::BadVocab),
        ("vocabulary hash table", rewritten(|t, _| {
            let e = find(t, "tokenizer.vocab.hash");
            for v in e.bytes.chunks_exact_mut(4) {
                v.copy_from_slice(&0u32.to_le_bytes());
            }
        }), Status::BadVocab),
        ("bool metadata not 0/1", {
            // Build a file whose bool value byte is 2.
            let mut b = valid();
            let needle = b"tokenizer.do_lower_case";
            let at = b.windows(needle.len()).position(|w| w == needle).unwrap() + needle.len() + 4;
            b[at] = 2;
            reseal(&mut b);
            b
        }, Status::BadMetadata),
    ]
}

#[test]
fn int8_attention_needs_format_1_1_and_the_builder_declares_it() {
    let minor = |b: &[u8]| u16::from_le_bytes([b[10], b[11]]);
    // Without int8 attention the builder writes 1.0, so older readers keep reading its files.
    let plain = valid();
    assert_eq!(minor(&plain), 0);
    let fp = FpModel::random(tiny_config(), Head::Classification { labels: vec!["a".into(), "b".into()] }, 3).with_int8_attention(3.0, 2.5);
    let with = fp.bytes();
    assert_eq!(minor(&with), 1);
    let buf = Aligned::new(&with);
    let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
    let layers = &model.layout().layers;
    assert!(layers.iter().all(|l| l.attention_scales == Some(q8bert::AttentionScales { query_scale: 127.0 / 3.0, key_scale: 127.0 / 2.5 })));
    // The same tensors hand-added to a file that declares 1.1 open too.
    let hand = rewritten_as(1, |t, _| attention_scales(t, Some(f32_bytes(20.0)), Some(f32_bytes(30.0))));
    assert_eq!(status(&hand), Status::Ok);
    // int8 P·V alone, in one layer.
    let values = rewritten_as(1, |t, _| t.push(Entry { name: "encoder.layer.1.attention.value_scale".into(), dtype: DType::F32, dims: vec![1], bytes: f32_bytes(30.0) }));
    let buf = Aligned::new(&values);
    let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
    let scales: Vec<Option<f32>> = model.layout().layers.iter().map(|l| l.attention_value_scale).collect();
    assert_eq!(scales, [None, Some(30.0)]);
    assert!(model.layout().int8_attention());
    let fp = FpModel::random(tiny_config(), Head::TokenStates, 3).with_int8_values(2.0);
    assert_eq!(minor(&fp.bytes()), 1, "int8 P·V alone also declares 1.1");
}

/// A per-row model's tensors, re-declared as version 1.`minor`, after `edit`.
fn per_row_rewritten(minor: u16, edit: impl FnOnce(&mut Vec<Entry>)) -> Vec<u8> {
    let b = FpModel::random(tiny_config(), Head::Classification { labels: vec!["a".into(), "b".into()] }, 3).with_per_row_inputs().bytes();
    rewrite(&b, minor, |t, _| edit(t))
}

#[test]
fn per_row_inputs_need_format_1_2_and_the_builder_declares_it() {
    let minor = |b: &[u8]| u16::from_le_bytes([b[10], b[11]]);
    let fp = FpModel::random(tiny_config(), Head::Classification { labels: vec!["a".into(), "b".into()] }, 3).with_per_row_inputs();
    let bytes = fp.bytes();
    assert_eq!(minor(&bytes), 2, "per-row inputs declare 1.2");
    let buf = Aligned::new(&bytes);
    let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
    assert_eq!(model.layout().per_row_linears(), model.layout().linears().count());
    assert_eq!(model.layout().linears().count(), 2 * 4 + 2);
    assert!(model.layout().linears().all(|l| l.input == q8bert::model::InputQuant::PerRow));
    // With int8 attention as well: still 1.2 (not lowered to 1.1).
    assert_eq!(minor(&fp.clone().with_int8_attention(2.0, 2.0).bytes()), 2);
    // Static files keep their version, so older readers still read them.
    assert_eq!(minor(&valid()), 0);
    // q8bert_model_info says which scheme a file uses.
    for (bytes, want) in [(bytes.clone(), q8bert::ffi::Q8BERT_ACTIVATIONS_PER_ROW), (valid(), q8bert::ffi::Q8BERT_ACTIVATIONS_STATIC)] {
        use q8bert::ffi::*;
        let buf = Aligned::new(&bytes);
        let mut m = std::ptr::null_mut();
        let mut info = q8bert_info::default();
        // SAFETY: the buffer outlives the model, freed before it drops; out pointers are valid.
        unsafe {
            assert_eq!(q8bert_create_from_memory(buf.bytes().as_ptr(), buf.bytes().len(), std::ptr::null(), &mut m), Status::Ok);
            assert_eq!(q8bert_model_info(m, &mut info), Status::Ok);
            q8bert_free(m);
        }
        assert_eq!(info.activations, want);
    }
    let cases: Vec<(&str, Vec<u8>, Status)> = vec![
        ("the same tensors declared 1.2 open", per_row_rewritten(2, |_| {}), Status::Ok),
        ("per-row input in a file declaring 1.1", per_row_rewritten(1, |_| {}), Status::UnsupportedVersion),
        ("per-row input in a file declaring 1.0", per_row_rewritten(0, |_| {}), Status::UnsupportedVersion),
        ("NaN in an f32 bias", per_row_rewritten(2, |t| find(t, "encoder.layer.1.output.bias").bytes[4..8].copy_from_slice(&f32::NAN.to_le_bytes())), Status::BadScale),
        ("infinite f32 bias", per_row_rewritten(2, |t| find(t, "classifier.bias").bytes[..4].copy_from_slice(&f32::INFINITY.to_le_bytes())), Status::BadScale),
        ("no input scale and an i32 bias", per_row_rewritten(2, |t| find(t, "pooler.bias").dtype = DType::I32), Status::MissingTensor),
        ("a static layer (input scale) with an f32 bias", per_row_rewritten(2, |t| t.push(Entry { name: "pooler.input_scale".into(), dtype: DType::F32, dims: vec![1], bytes: f32_bytes(10.0) })), Status::WrongDtype),
        ("f32 bias of the wrong length", per_row_rewritten(2, |t| {
            let b = find(t, "encoder.layer.0.intermediate.bias");
            b.dims = vec![b.dims[0] - 1];
            b.bytes.truncate(b.bytes.len() - 4);
        }), Status::WrongShape),
    ];
    check_cases(cases);
}

/// Each file opens with its expected status; a rejected one also carries a message.
fn check_cases(cases: Vec<(&str, Vec<u8>, Status)>) {
    for (what, bytes, want) in cases {
        let got = status(&bytes);
        assert_eq!(got, want, "{what}");
        if want != Status::Ok {
            let msg = open(&bytes, false).unwrap_err().message;
            assert!(!msg.is_empty(), "{what}: no message");
            eprintln!("{what}: {msg}");
        }
    }
}

/// A per-token model (per-row inputs and embedding rows), re-declared as 1.`minor`, after `edit`.
fn per_row_embeddings_rewritten(minor: u16, edit: impl FnOnce(&mut Vec<Entry>)) -> Vec<u8> {
    let b = FpModel::random(tiny_config(), Head::Classification { labels: vec!["a".into(), "b".into()] }, 4).with_per_row_inputs().with_per_row_embeddings().bytes();
    rewrite(&b, minor, |t, _| edit(t))
}

#[test]
fn per_row_embedding_scales_need_format_1_3_and_the_builder_declares_it() {
    let minor = |b: &[u8]| u16::from_le_bytes([b[10], b[11]]);
    let config = tiny_config();
    let fp = FpModel::random(config, Head::Classification { labels: vec!["a".into(), "b".into()] }, 4).with_per_row_embeddings();
    assert_eq!(minor(&fp.bytes()), 3, "per-row embedding scales declare 1.3");
    assert_eq!(minor(&fp.clone().with_per_row_inputs().bytes()), 3, "with per-row inputs too: 1.3, not lowered to 1.2");
    let listing = rewrite(&fp.bytes(), 3, |t, _| {
        let word = find(t, "embeddings.word_embeddings.scale");
        assert_eq!(word.dims, vec![config.vocab_size as u64], "one scale per vocabulary row");
        let types = find(t, "embeddings.token_type_embeddings.scale");
        assert_eq!(types.dims, vec![config.type_vocab_size as u64]);
    });
    assert_eq!(status(&listing), Status::Ok);
    let rows = config.vocab_size as usize;
    let cases: Vec<(&str, Vec<u8>, Status)> = vec![
        ("the same tensors declared 1.3 open", per_row_embeddings_rewritten(3, |_| {}), Status::Ok),
        ("per-row embedding scales in a file declaring 1.2", per_row_embeddings_rewritten(2, |_| {}), Status::UnsupportedVersion),
        ("per-row embedding scales in a file declaring 1.0", rewrite(&fp.bytes(), 0, |_, _| {}), Status::UnsupportedVersion),
        ("a zero row scale", per_row_embeddings_rewritten(3, |t| find(t, "embeddings.word_embeddings.scale").bytes[8..12].copy_from_slice(&0f32.to_le_bytes())), Status::BadScale),
        ("a NaN row scale", per_row_embeddings_rewritten(3, |t| find(t, "embeddings.position_embeddings.scale").bytes[..4].copy_from_slice(&f32::NAN.to_le_bytes())), Status::BadScale),
        ("scales for fewer rows than the table", per_row_embeddings_rewritten(3, |t| {
            let s = find(t, "embeddings.word_embeddings.scale");
            s.dims = vec![rows as u64 - 1];
            s.bytes.truncate((rows - 1) * 4);
        }), Status::WrongShape),
        ("i32 row scales", per_row_embeddings_rewritten(3, |t| find(t, "embeddings.word_embeddings.scale").dtype = DType::I32), Status::WrongDtype),
    ];
    check_cases(cases);
}

#[test]
fn every_rejection_has_a_message() {
    let mut b = valid();
    b[8] = 7;
    reseal(&mut b);
    let e = open(&b, false).unwrap_err();
    assert_eq!(e.status, Status::UnsupportedVersion);
    assert!(e.message.contains("7.0"), "{}", e.message);
}

/// Position of metadata entry `key`: (length field of the key, type field, value).
fn meta_fields(b: &[u8], key: &str) -> (usize, usize, usize) {
    let mut needle = (key.len() as u32).to_le_bytes().to_vec();
    needle.extend_from_slice(key.as_bytes());
    let at = b.windows(needle.len()).position(|w| w == needle.as_slice()).unwrap_or_else(|| panic!("no key {key}"));
    let ty = at + needle.len();
    (at, ty, ty + 4)
}

fn set_meta(m: &mut [(String, MetaValue)], key: &str, v: MetaValue) {
    m.iter_mut().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no key {key}")).1 = v;
}

fn f32_bytes(v: f32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// Rules of the container and the model not covered by the lists above.
fn more_cases() -> Vec<(&'static str, Vec<u8>, Status)> {
    vec![
        ("empty file", Vec::new(), Status::FileTooShort),
        ("127-byte file", valid()[..127].to_vec(), Status::FileTooShort),
        ("directory not right after metadata", patched(|b| {
            let v = u64_at(b, 48);
            put_u64(b, 48, v + 8)
        }), Status::SectionOutOfBounds),
        ("data section past end of file", patched(|b| {
            let v = u64_at(b, 72);
            put_u64(b, 72, v + 64)
        }), Status::SectionOutOfBounds),
        ("non-zero padding before data", patched(|b| {
            let dir_end = (u64_at(b, 48) + u64_at(b, 56)) as usize;
            assert!(dir_end < u64_at(b, 64) as usize, "the valid model has padding before its data");
            b[dir_end] = 1;
        }), Status::HoleOrTrailingBytes),
        ("header checksum", {
            let mut b = valid();
            let name_byte = u64_at(&b, 48) as usize + 4;
            b[name_byte] ^= 1;
            b
        }, Status::ChecksumMismatch),
        ("metadata key too long", patched(|b| put_u32(b, 128, 300)), Status::BadString),
        ("empty metadata key", patched(|b| put_u32(b, 128, 0)), Status::BadString),
        ("metadata key not UTF-8", patched(|b| b[132] = 0xff), Status::BadString),
        ("metadata key with a space", patched(|b| b[132] = b' '), Status::BadString),
        ("unknown metadata type", patched(|b| {
            let (_, ty, _) = meta_fields(b, "bert.hidden_size");
            put_u32(b, ty, 9)
        }), Status::BadMetadata),
        ("string value longer than 1 MiB", patched(|b| {
            let (_, _, v) = meta_fields(b, "general.architecture");
            put_u32(b, v, 2 << 20)
        }), Status::BadString),
        ("string value past the section", patched(|b| {
            let (_, _, v) = meta_fields(b, "general.architecture");
            put_u32(b, v, 1 << 19)
        }), Status::BadMetadata),
        ("string value not UTF-8", patched(|b| {
            let (_, _, v) = meta_fields(b, "general.architecture");
            b[v + 4] = 0xc3; // a lead byte followed by ASCII
        }), Status::BadString),
        ("string array count past the section", patched(|b| {
            let (_, _, v) = meta_fields(b, "head.labels");
            put_u32(b, v, u32::MAX)
        }), Status::BadMetadata),
        ("duplicate metadata key", patched(|b| {
            let (at, ..) = meta_fields(b, "tokenizer.sep_token_id");
            b[at + 4 + 10..at + 4 + 13].copy_from_slice(b"cls");
        }), Status::DuplicateName),
        ("metadata section longer than its entries", patched(|b| {
            let v = u32::from_le_bytes(b[24..28].try_into().unwrap());
            put_u32(b, 24, v - 1)
        }), Status::BadMetadata),
        ("rank 5", patched(|b| {
            let (_, _, rank, ..) = entry_fields(b, 0);
            put_u32(b, rank, 5)
        }), Status::BadTensorEntry),
        ("tensor name too long", patched(|b| {
            let (start, ..) = entry_fields(b, 0);
            put_u32(b, start, 300)
        }), Status::BadString),
        ("tensor name not UTF-8", patched(|b| {
            let (start, ..) = entry_fields(b, 0);
            b[start + 4] = 0xff;
        }), Status::BadString),
        ("directory longer than its entries", patched(|b| {
            let v = u32::from_le_bytes(b[28..32].try_into().unwrap());
            put_u32(b, 28, v - 1)
        }), Status::BadTensorEntry),
        ("packed dtype on a rank-1 tensor", patched(|b| {
            let i = (0..).find(|&i| {
                let (_, _, rank, ..) = entry_fields(b, i);
                b[rank] == 1
            });
            let (_, dtype, ..) = entry_fields(b, i.unwrap());
            put_u32(b, dtype, 16)
        }), Status::BadTensorEntry),
        ("data section longer than its tensors", patched(|b| {
            b.extend_from_slice(&[0u8; 64]);
            let v = u64_at(b, 72);
            put_u64(b, 72, v + 64)
        }), Status::HoleOrTrailingBytes),
        ("infinite scale", rewritten(|t, _| find(t, "encoder.layer.0.attention.qkv.input_scale").bytes = f32_bytes(f32::INFINITY)), Status::BadScale),
        ("subnormal scale (inverse overflows)", rewritten(|t, _| find(t, "embeddings.position_embeddings.scale").bytes = f32_bytes(1e-40)), Status::BadScale),
        ("NaN per-channel weight scale", rewritten(|t, _| {
            let e = find(t, "encoder.layer.1.output.weight_scale");
            e.bytes[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        }), Status::BadScale),
        ("packed weight stored as plain i8", rewritten(|t, _| find(t, "pooler.weight").dtype = DType::I8), Status::WrongDtype),
        ("embedding table stored as u8", rewritten(|t, _| find(t, "embeddings.token_type_embeddings.weight").dtype = DType::U8), Status::WrongDtype),
        ("vocabulary offsets as i32", rewritten(|t, _| find(t, "tokenizer.vocab.offsets").dtype = DType::I32), Status::WrongDtype),
        ("position table shorter than the configuration", rewritten(|_, m| set_meta(m, "bert.max_position_embeddings", MetaValue::U32(25))), Status::WrongShape),
        ("classifier rows vs label count", rewritten(|_, m| set_meta(m, "head.labels", MetaValue::StrArray(vec!["a".into(), "b".into(), "c".into()]))), Status::WrongShape),
        ("NaN layer_norm_eps", rewritten(|_, m| set_meta(m, "bert.layer_norm_eps", MetaValue::F32(f32::NAN))), Status::BadConfig),
        ("architecture not bert", rewritten(|_, m| set_meta(m, "general.architecture", MetaValue::Str("gpt2".into()))), Status::BadConfig),
        ("activation not supported", rewritten(|_, m| set_meta(m, "bert.hidden_act", MetaValue::Str("swish".into()))), Status::BadConfig),
        ("text limit above the position table", rewritten(|_, m| m.push(("tokenizer.max_seq_len".into(), MetaValue::U32(25)))), Status::BadConfig),
        ("text limit of wrong type", rewritten(|_, m| m.push(("tokenizer.max_seq_len".into(), MetaValue::Str("256".into())))), Status::MissingMetadata),
        ("zero hidden size", rewritten(|_, m| set_meta(m, "bert.hidden_size", MetaValue::U32(0))), Status::BadConfig),
        ("vocabulary above 2^24", rewritten(|_, m| set_meta(m, "bert.vocab_size", MetaValue::U32((1 << 24) + 1))), Status::BadConfig),
        ("hidden size above 65536", rewritten(|_, m| set_meta(m, "bert.hidden_size", MetaValue::U32(1 << 20))), Status::BadConfig),
        ("unknown pooling", rewritten(|_, m| m.push(("head.pooling".into(), MetaValue::Str("median".into())))), Status::BadConfig),
        ("zero points in a 1.3 file", rewritten_as(3, |_, m| m.push(("quant.per_row_zero_points".into(), MetaValue::Bool(true)))), Status::UnsupportedVersion),
        ("zero points of wrong type", rewritten_as(4, |_, m| m.push(("quant.per_row_zero_points".into(), MetaValue::U32(1)))), Status::MissingMetadata),
        ("dense activation without a dense layer", rewritten(|_, m| m.push(("head.dense.activation".into(), MetaValue::Str("tanh".into())))), Status::BadConfig),
        ("classification without labels", rewritten(|_, m| m.retain(|(k, _)| k != "head.labels")), Status::MissingMetadata),
        ("empty label list", rewritten(|_, m| set_meta(m, "head.labels", MetaValue::StrArray(vec![]))), Status::MissingMetadata),
        ("tokenizer flag of wrong type", rewritten(|_, m| set_meta(m, "tokenizer.do_lower_case", MetaValue::U32(1))), Status::MissingMetadata),
        ("missing special token id", rewritten(|_, m| m.retain(|(k, _)| k != "tokenizer.unk_token_id")), Status::MissingMetadata),
        ("unk token out of vocabulary", rewritten(|_, m| set_meta(m, "tokenizer.unk_token_id", MetaValue::U32(u32::MAX))), Status::BadSpecialToken),
        ("mask token out of vocabulary", rewritten(|_, m| set_meta(m, "tokenizer.mask_token_id", MetaValue::U32(40))), Status::BadSpecialToken),
        ("empty vocabulary token", rewritten(|t, _| {
            let e = find(t, "tokenizer.vocab.offsets");
            let first = e.bytes[4..8].to_vec();
            e.bytes[8..12].copy_from_slice(&first);
        }), Status::BadVocab),
        ("vocabulary token not UTF-8", rewritten(|t, _| find(t, "tokenizer.vocab.bytes").bytes[0] = 0xff), Status::BadVocab),
        ("more vocabulary tokens than embedding rows", rewritten(|t, m| {
            // 39 embedding rows, 40 tokens.
            set_meta(m, "bert.vocab_size", MetaValue::U32(39));
            let e = find(t, "embeddings.word_embeddings.weight");
            e.dims[0] = 39;
            e.bytes.truncate(39 * 32);
        }), Status::BadVocab),
    ]
}

/// An embedding model pooling with cls and mean into two chained Dense layers (format 1.10).
fn chained_head() -> Vec<u8> {
    use q8bert::builder::{DenseActivation, Pooling};
    FpModel::random(tiny_config(), Head::Embedding { pooling: Pooling::Mean, normalize: true }, 990)
        .with_pooling_modes(&[Pooling::Cls, Pooling::Mean])
        .with_dense(16, DenseActivation::Tanh, 991)
        .with_dense(8, DenseActivation::Identity, 992)
        .bytes()
}

/// Pooling lists and Dense chains (format 1.10) that do not fit together.
fn head_list_cases() -> Vec<(&'static str, Vec<u8>, Status)> {
    let strs = |v: &[&str]| MetaValue::StrArray(v.iter().map(|s| s.to_string()).collect());
    let with = |minor: u16, key: &'static str, v: MetaValue| rewrite(&chained_head(), minor, move |_, m| set_meta(m, key, v));
    vec![
        ("pooling list in a 1.9 file", with(9, "head.pooling", strs(&["cls", "mean"])), Status::UnsupportedVersion),
        ("Dense chain in a 1.9 file", rewrite(&chained_head(), 9, |_, m| set_meta(m, "head.pooling", MetaValue::Str("cls".into()))), Status::UnsupportedVersion),
        ("repeated pooling mode", with(10, "head.pooling", strs(&["cls", "cls"])), Status::BadConfig),
        ("unknown pooling mode in a list", with(10, "head.pooling", strs(&["cls", "median"])), Status::BadConfig),
        ("empty pooling list", with(10, "head.pooling", strs(&[])), Status::BadConfig),
        ("first Dense layer narrower than the pooled vector", with(10, "head.pooling", MetaValue::Str("cls".into())), Status::WrongShape),
        ("more Dense activations than layers", with(10, "head.dense.activation", strs(&["tanh", "identity", "tanh"])), Status::MissingTensor),
        ("fewer Dense activations than layers", with(10, "head.dense.activation", MetaValue::Str("tanh".into())), Status::UnknownTensor),
        ("unknown Dense activation in a list", with(10, "head.dense.activation", strs(&["tanh", "gelu"])), Status::BadConfig),
        ("nine Dense activations", with(10, "head.dense.activation", strs(&["tanh"; 9])), Status::BadConfig),
        ("second Dense layer's input is not the first's output", rewrite(&chained_head(), 10, |t, _| {
            // dense.1 as [8, 12] (packed: 16 rows of 12), its input no longer the first layer's 16.
            let e = find(t, "dense.1.weight");
            e.dims[1] = 12;
            e.bytes.truncate(16 * 12);
        }), Status::WrongShape),
    ]
}

/// Every named bad file, with whether it is loaded with full payload verification.
fn bad_files() -> Vec<(&'static str, Vec<u8>, Status, bool)> {
    let mut all: Vec<_> = [header_cases(), directory_cases(), model_cases(), more_cases(), head_list_cases()].into_iter().flatten().map(|(n, b, s)| (n, b, s, false)).collect();
    let mut p = valid();
    let first_weight = u64_at(&p, 64) as usize;
    p[first_weight] ^= 0x10;
    all.push(("payload checksum (full verification)", p, Status::ChecksumMismatch, true));
    all
}

#[test]
fn bad_file_suite() {
    let cases = bad_files();
    let mut names = String::new();
    let mut failures = Vec::new();
    for (name, bytes, want, verify) in &cases {
        let got = open(bytes, *verify);
        let status = got.as_ref().err().map_or(Status::Ok, |e| e.status);
        if status != *want {
            failures.push(format!("{name}: want {want:?}, got {:?}", got.err()));
        }
        names.push_str(&format!("{name}\t{want:?}\n"));
    }
    assert!(failures.is_empty(), "{} of {} bad files misjudged:\n{}", failures.len(), cases.len(), failures.join("\n"));
    let mut seen = std::collections::BTreeSet::new();
    assert!(cases.iter().all(|c| seen.insert(c.0)), "bad-file names are unique");
    assert!(cases.len() >= 40);
    // tests/data/bad_files.txt lists the suite (name, expected status); Q8BERT_BLESS=1 rewrites it.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/bad_files.txt");
    if std::env::var_os("Q8BERT_BLESS").is_some() {
        std::fs::write(path, &names).unwrap();
    }
    assert_eq!(std::fs::read_to_string(path).unwrap_or_default(), names, "tests/data/bad_files.txt is stale: Q8BERT_BLESS=1 cargo test --test format");
}

/// One bit flipped, in turn, at every bit of the header, metadata and directory: always
/// rejected (the header checksum), and with the checksums resealed (so the parser sees the
/// change) never a panic and never an allocation larger than the file. Every payload bit
/// flipped is rejected when full verification is requested.
#[test]
fn single_bit_flips() {
    let b = valid();
    let data_offset = u64_at(&b, 64) as usize;
    let (mut resealed_ok, mut largest_seen) = (0usize, 0usize);
    let mut statuses = std::collections::BTreeMap::new();
    for byte in 0..data_offset {
        for bit in 0..8 {
            let mut f = b.clone();
            f[byte] ^= 1 << bit;
            let (s, largest) = open_counted(&Aligned::new(&f), false);
            assert_ne!(s, Status::Ok, "bit {bit} of byte {byte} flipped was accepted");
            assert!(largest <= f.len(), "bit {bit} of byte {byte}: an allocation of {largest} bytes");
            reseal(&mut f);
            let (s, largest) = open_counted(&Aligned::new(&f), false);
            assert!(largest <= f.len(), "bit {bit} of byte {byte} (resealed): an allocation of {largest} bytes");
            largest_seen = largest_seen.max(largest);
            *statuses.entry(format!("{s:?}")).or_insert(0usize) += 1;
            resealed_ok += (s == Status::Ok) as usize;
        }
    }
    let mut payload_statuses = std::collections::BTreeMap::new();
    for byte in data_offset..b.len() {
        let mut f = b.clone();
        f[byte] ^= 1 << (byte % 8);
        let (s, largest) = open_counted(&Aligned::new(&f), true);
        // Padding bytes are caught as non-zero padding before the hash; the rest by the hash.
        assert!(matches!(s, Status::ChecksumMismatch | Status::HoleOrTrailingBytes), "payload byte {byte} flipped, full verification: {s:?}");
        assert!(largest <= f.len());
        *payload_statuses.entry(format!("{s:?}")).or_insert(0usize) += 1;
    }
    eprintln!(
        "{} header/directory bit flips rejected; resealed: {resealed_ok} accepted (value-only changes), statuses {statuses:?}; \
         {} payload flips rejected with verification ({payload_statuses:?}); largest allocation {largest_seen} bytes for a {}-byte file",
        data_offset * 8,
        b.len() - data_offset,
        b.len()
    );
}
