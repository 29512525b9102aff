//! Malformed model files: each broken rule is rejected with its own status, never a panic.
//! Files are made from a valid tiny model, either by patching bytes (then resealing the
//! checksums, so the rule under test is what trips) or by rewriting it with edited contents.

mod common;

use common::{tiny_config, Aligned, FpModel};
use q8bert::builder::Head;
use q8bert::format::writer::{reseal, FileWriter};
use q8bert::format::{DType, FileIndex, MetaValue};
use q8bert::{Model, Options, Status};

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
    let b = valid();
    let index = FileIndex::parse(&b, true).unwrap();
    let mut tensors: Vec<Entry> = index
        .tensors
        .iter()
        .map(|t| Entry { name: t.name.clone(), dtype: t.dtype, dims: t.dims.clone(), bytes: b[t.range.clone()].to_vec() })
        .collect();
    let mut meta: Vec<(String, MetaValue)> = index.metadata.into_iter().collect();
    edit(&mut tensors, &mut meta);
    let mut w = FileWriter::new();
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

#[test]
fn truncation_at_every_offset_is_rejected() {
    let b = valid();
    let mut statuses = std::collections::BTreeSet::new();
    for len in 0..b.len() {
        let s = status(&b[..len]);
        assert_ne!(s, Status::Ok, "truncated to {len} bytes was accepted");
        statuses.insert(s as u32);
    }
    assert!(status(&b[..10]) == Status::FileTooShort);
    eprintln!("{} truncations rejected with statuses {statuses:?}", b.len());
}

#[test]
fn header_rules() {
    let cases: Vec<(&str, Vec<u8>, Status)> = vec![
        ("bad magic", patched(|b| b[0] = b'X'), Status::BadMagic),
        ("major version 2", patched(|b| b[8] = 2), Status::UnsupportedVersion),
        ("newer minor version", patched(|b| b[10] = 9), Status::UnsupportedVersion),
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
    ];
    for (name, bytes, want) in cases {
        assert_eq!(status(&bytes), want, "{name}: {:?}", open(&bytes, false).err());
    }
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

#[test]
fn directory_rules() {
    let cases: Vec<(&str, Vec<u8>, Status)> = vec![
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
    ];
    for (name, bytes, want) in cases {
        assert_eq!(status(&bytes), want, "{name}: {:?}", open(&bytes, false).err());
    }
}

#[test]
fn model_rules() {
    let cases: Vec<(&str, Vec<u8>, Status)> = vec![
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
    ];
    for (name, bytes, want) in cases {
        assert_eq!(status(&bytes), want, "{name}: {:?}", open(&bytes, false).err());
    }
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
