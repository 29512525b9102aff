//! The checkpoint layouts models come in, each written here from one tiny random BERT: a single
//! model.safetensors, sharded safetensors (model.safetensors.index.json), pytorch_model.bin (the
//! zip/pickle format torch.save writes since PyTorch 1.6, read without Python by candle's
//! reader) and sharded pytorch_model.bin. Every layout must load to the same tensors, bit for
//! bit, whatever its key prefix (`bert.` in a classifier, none in a BertModel); a missing or
//! unreadable file is named with the next step.
//!
//! No torch here: `torch_save` below writes the file as torch.save does (protocol-2 pickle of an
//! OrderedDict state_dict with `_metadata`, tensors rebuilt by `torch._utils._rebuild_tensor_v2`
//! from persistent-id storages `('storage', torch.FloatStorage, key, 'cpu', numel)` stored as
//! `archive/data/<key>`, repeated globals memoized and fetched with BINGET, and views sharing one
//! storage at an offset).

use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use trainer::bert::{Bert, BertConfig};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trainer-checkpoints-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ---- a minimal zip writer (stored entries, as torch writes them) ----

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

fn zip_stored(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let header = |sig: u32, central: bool| {
            let mut h = Vec::new();
            h.extend(sig.to_le_bytes());
            if central {
                h.extend(20u16.to_le_bytes()); // version made by
            }
            h.extend(20u16.to_le_bytes()); // version needed
            h.extend(0u16.to_le_bytes()); // flags
            h.extend(0u16.to_le_bytes()); // method: stored
            h.extend(0u16.to_le_bytes()); // time
            h.extend(0x21u16.to_le_bytes()); // date 1980-01-01
            h.extend(crc.to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes()); // extra
            if central {
                h.extend(0u16.to_le_bytes()); // comment
                h.extend(0u16.to_le_bytes()); // disk
                h.extend(0u16.to_le_bytes()); // internal attributes
                h.extend(0u32.to_le_bytes()); // external attributes
                h.extend(offset.to_le_bytes());
            }
            h.extend(name.as_bytes());
            h
        };
        out.extend(header(0x0403_4b50, false));
        out.extend(data);
        central.extend(header(0x0201_4b50, true));
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

// ---- a protocol-2 pickle writer for a state_dict ----

#[derive(Default)]
struct Pickle {
    out: Vec<u8>,
    memo: HashMap<String, u32>,
    next: u32,
}

impl Pickle {
    fn put(&mut self) -> u32 {
        let id = self.next;
        self.next += 1;
        if id < 256 {
            self.out.extend([b'q', id as u8]);
        } else {
            self.out.push(b'r');
            self.out.extend(id.to_le_bytes());
        }
        id
    }
    /// GLOBAL the first time, BINGET after (pickle memoizes classes and functions).
    fn global(&mut self, module: &str, name: &str) {
        let key = format!("{module}.{name}");
        if let Some(&id) = self.memo.get(&key) {
            self.get(id);
            return;
        }
        self.out.push(b'c');
        self.out.extend(format!("{module}\n{name}\n").as_bytes());
        let id = self.put();
        self.memo.insert(key, id);
    }
    fn get(&mut self, id: u32) {
        if id < 256 {
            self.out.extend([b'h', id as u8]);
        } else {
            self.out.push(b'j');
            self.out.extend(id.to_le_bytes());
        }
    }
    fn str(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend((s.len() as u32).to_le_bytes());
        self.out.extend(s.as_bytes());
        self.put();
    }
    fn int(&mut self, v: usize) {
        if v < 256 {
            self.out.extend([b'K', v as u8]);
        } else if v < 65536 {
            self.out.push(b'M');
            self.out.extend((v as u16).to_le_bytes());
        } else {
            self.out.push(b'J');
            self.out.extend((v as i32).to_le_bytes());
        }
    }
    fn int_tuple(&mut self, v: &[usize]) {
        match v.len() {
            0 => self.out.push(b')'),
            1..=3 => {
                for &x in v {
                    self.int(x);
                }
                self.out.push([0x85, 0x86, 0x87][v.len() - 1]);
            }
            _ => {
                self.out.push(b'(');
                for &x in v {
                    self.int(x);
                }
                self.out.push(b't');
            }
        }
        self.put();
    }
    fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.out.push(b')');
        self.out.push(b'R');
        self.put();
    }
}

/// One tensor of a state_dict: `numel` f32 values of storage `key`, starting at element
/// `offset`, with this shape (contiguous strides).
struct Entry {
    name: String,
    key: String,
    offset: usize,
    shape: Vec<usize>,
}

/// The bytes of a pytorch_model.bin holding `tensors` (f32 as FloatStorage, i64 as
/// LongStorage). Consecutive 1-D f32 tensors share one storage, as views of a flat buffer do, to
/// exercise storage offsets.
fn torch_save(tensors: &[(String, Tensor)]) -> Vec<u8> {
    // (bytes, storage class, element count)
    let mut storages: Vec<(Vec<u8>, &str, usize)> = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    for (name, t) in tensors {
        let (bytes, class): (Vec<u8>, &str) = match t.dtype() {
            DType::F32 => (t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().flat_map(|x| x.to_le_bytes()).collect(), "FloatStorage"),
            DType::I64 => (t.flatten_all().unwrap().to_vec1::<i64>().unwrap().iter().flat_map(|x| x.to_le_bytes()).collect(), "LongStorage"),
            d => panic!("{d:?}"),
        };
        let n = t.elem_count();
        let share = t.rank() == 1
            && class == "FloatStorage"
            && entries.last().is_some_and(|e| e.shape.len() == 1)
            && storages.last().is_some_and(|s| s.1 == "FloatStorage");
        if share {
            let s = storages.last_mut().unwrap();
            let offset = s.2;
            s.0.extend(&bytes);
            s.2 += n;
            entries.push(Entry { name: name.clone(), key: (storages.len() - 1).to_string(), offset, shape: t.dims().to_vec() });
        } else {
            storages.push((bytes, class, n));
            entries.push(Entry { name: name.clone(), key: (storages.len() - 1).to_string(), offset: 0, shape: t.dims().to_vec() });
        }
    }
    let mut p = Pickle::default();
    p.out.extend([0x80, 2]);
    p.empty_ordered_dict();
    p.out.push(b'(');
    for e in &entries {
        p.str(&e.name);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.out.push(b'(');
        // persistent id ('storage', torch.FloatStorage, key, 'cpu', numel)
        p.out.push(b'(');
        p.str("storage");
        let (class, numel) = {
            let s = &storages[e.key.parse::<usize>().unwrap()];
            (s.1, s.2)
        };
        p.global("torch", class);
        p.str(&e.key);
        p.str("cpu");
        p.int(numel);
        p.out.push(b't');
        p.put();
        p.out.push(b'Q');
        p.int(e.offset);
        p.int_tuple(&e.shape);
        let mut stride = vec![1usize; e.shape.len()];
        for i in (0..e.shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * e.shape[i + 1];
        }
        p.int_tuple(&stride);
        p.out.push(0x89); // requires_grad False
        p.empty_ordered_dict(); // backward hooks
        p.out.push(b't');
        p.put();
        p.out.push(b'R');
        p.put();
    }
    p.out.push(b'u');
    // state: {'_metadata': OrderedDict([('', {'version': 1})])}, applied with BUILD
    p.out.push(b'}');
    p.put();
    p.str("_metadata");
    p.empty_ordered_dict();
    p.str("");
    p.out.push(b'}');
    p.put();
    p.str("version");
    p.int(1);
    p.out.extend([b's', b's', b's', b'b', b'.']);

    let mut files = vec![("archive/data.pkl".to_string(), p.out)];
    files.push(("archive/byteorder".into(), b"little".to_vec()));
    for (i, s) in storages.iter().enumerate() {
        files.push((format!("archive/data/{i}"), s.0.clone()));
    }
    files.push(("archive/version".into(), b"3\n".to_vec()));
    zip_stored(&files)
}

// ---- the layouts ----

fn config() -> BertConfig {
    let mut cfg = BertConfig::tiny(40);
    cfg.num_hidden_layers = 2;
    cfg
}

/// The model's tensors under Hugging Face names, in a fixed order.
fn state_dict(model: &Bert) -> Vec<(String, Tensor)> {
    model.named_params().into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect()
}

fn write_config(dir: &Path, model: &Bert) {
    std::fs::write(dir.join("config.json"), serde_json::to_string(&model.cfg).unwrap()).unwrap();
}

/// Splits the tensors over `n` shards named as transformers names them, writing each with
/// `write` and the index beside them.
fn write_sharded(dir: &Path, sd: &[(String, Tensor)], n: usize, ext: &str, index: &str, write: impl Fn(&Path, &[(String, Tensor)])) {
    let per = sd.len().div_ceil(n);
    let mut weight_map = BTreeMap::new();
    let stem = if ext == "bin" { "pytorch_model" } else { "model" };
    for (i, chunk) in sd.chunks(per).enumerate() {
        let file = format!("{stem}-{:05}-of-{n:05}.{ext}", i + 1);
        write(&dir.join(&file), chunk);
        for (name, _) in chunk {
            weight_map.insert(name.clone(), file.clone());
        }
    }
    let idx = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(dir.join(index), idx.to_string()).unwrap();
}

fn write_safetensors(path: &Path, sd: &[(String, Tensor)]) {
    let m: HashMap<String, Tensor> = sd.iter().cloned().collect();
    candle_core::safetensors::save(&m, path).unwrap();
}

fn write_bin(path: &Path, sd: &[(String, Tensor)]) {
    std::fs::write(path, torch_save(sd)).unwrap();
}

/// Every layout of `model` under `root`, by name.
fn write_layouts(root: &Path, model: &Bert) -> Vec<(&'static str, PathBuf)> {
    let sd = state_dict(model);
    let mut dirs = Vec::new();
    let layout = |name: &'static str| {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        write_config(&d, model);
        d
    };
    let d = layout("safetensors");
    write_safetensors(&d.join("model.safetensors"), &sd);
    dirs.push(("safetensors", d));
    let d = layout("sharded-safetensors");
    write_sharded(&d, &sd, 3, "safetensors", "model.safetensors.index.json", write_safetensors);
    dirs.push(("sharded-safetensors", d));
    let d = layout("pytorch");
    write_bin(&d.join("pytorch_model.bin"), &sd);
    dirs.push(("pytorch", d));
    let d = layout("sharded-pytorch");
    write_sharded(&d, &sd, 2, "bin", "pytorch_model.bin.index.json", write_bin);
    dirs.push(("sharded-pytorch", d));
    dirs
}

fn assert_same(a: &Bert, b: &Bert, what: &str) {
    let (pa, pb) = (a.named_params(), b.named_params());
    assert_eq!(pa.len(), pb.len(), "{what}");
    for ((na, va), (nb, vb)) in pa.iter().zip(&pb) {
        assert_eq!(na, nb, "{what}");
        assert_eq!(va.dims(), vb.dims(), "{what}: {na}");
        let x: Vec<f32> = va.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let y: Vec<f32> = vb.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()), "{what}: {na} differs");
    }
}

#[test]
fn every_layout_loads_the_same_tensors() {
    let root = tmp("same");
    // A classifier (keys under `bert.` plus `classifier.*`) and a BertModel (no prefix).
    for (num_labels, tag) in [(Some(3), "classifier"), (None, "encoder")] {
        let model = Bert::random(config(), num_labels, 7).unwrap();
        for (layout, dir) in write_layouts(&root.join(tag), &model) {
            let loaded = Bert::load(&dir, num_labels, 0).unwrap_or_else(|e| panic!("{tag} {layout}: {e:#}"));
            if num_labels.is_some() {
                assert_eq!(loaded.head_init, Some(trainer::bert::HeadInit::Loaded), "{tag} {layout}");
            }
            assert_same(&model, &loaded, &format!("{tag} {layout}"));
            // The directory check the CLI runs first accepts the layout too.
            std::fs::write(dir.join("vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n").unwrap();
            trainer::model_dir::check(&dir).unwrap_or_else(|e| panic!("{tag} {layout}: {e:#}"));
        }
    }
}

/// A real checkpoint also holds buffers the encoder does not use (an int64 position_ids in
/// older transformers versions): read and ignored.
#[test]
fn pytorch_extra_int64_buffer() {
    let dir = tmp("extra");
    let model = Bert::random(config(), None, 3).unwrap();
    write_config(&dir, &model);
    let mut sd = state_dict(&model);
    let t = config().max_position_embeddings;
    sd.insert(5, ("embeddings.position_ids".into(), Tensor::arange(0i64, t as i64, &Device::Cpu).unwrap().reshape((1, t)).unwrap()));
    write_bin(&dir.join("pytorch_model.bin"), &sd);
    let loaded = Bert::load(&dir, None, 0).unwrap();
    assert_same(&model, &loaded, "with position_ids");

    // The same file through candle's reader directly: the buffer is there with its shape.
    let all: HashMap<String, Tensor> = candle_core::pickle::read_all(dir.join("pytorch_model.bin")).unwrap().into_iter().collect();
    assert_eq!(all["embeddings.position_ids"].dims(), [1, t]);
    assert_eq!(all["embeddings.position_ids"].dtype(), DType::I64);
    assert_eq!(all["embeddings.position_ids"].flatten_all().unwrap().to_vec1::<i64>().unwrap(), (0..t as i64).collect::<Vec<_>>());
}

fn err_of(dir: &Path) -> String {
    match Bert::load(dir, None, 0) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn missing_and_unreadable_files_are_named() {
    let root = tmp("errors");
    let model = Bert::random(config(), None, 5).unwrap();
    let sd = state_dict(&model);

    // An index naming a shard that is not there.
    let d = root.join("missing-shard");
    std::fs::create_dir_all(&d).unwrap();
    write_config(&d, &model);
    write_sharded(&d, &sd, 2, "safetensors", "model.safetensors.index.json", write_safetensors);
    std::fs::remove_file(d.join("model-00002-of-00002.safetensors")).unwrap();
    let err = err_of(&d);
    assert!(err.contains(&format!("{} not found", d.join("model-00002-of-00002.safetensors").display())), "{err}");
    assert!(err.contains("model.safetensors.index.json") && err.contains("huggingface-cli download"), "{err}");

    // A shard that lacks a tensor its index places there.
    let d = root.join("short-shard");
    std::fs::create_dir_all(&d).unwrap();
    write_config(&d, &model);
    write_sharded(&d, &sd, 2, "safetensors", "model.safetensors.index.json", write_safetensors);
    write_safetensors(&d.join("model-00001-of-00002.safetensors"), &sd[1..sd.len().div_ceil(2)]);
    let err = err_of(&d);
    assert!(err.contains("model-00001-of-00002.safetensors: no tensor") && err.contains(&sd[0].0), "{err}");

    // An index without weight_map.
    let d = root.join("bad-index");
    std::fs::create_dir_all(&d).unwrap();
    write_config(&d, &model);
    std::fs::write(d.join("model.safetensors.index.json"), "{}").unwrap();
    let err = err_of(&d);
    assert!(err.contains("model.safetensors.index.json: no \"weight_map\""), "{err}");

    // A legacy (pre-1.6, not zip) pytorch_model.bin: named, with the conversion command.
    let d = root.join("legacy");
    std::fs::create_dir_all(&d).unwrap();
    write_config(&d, &model);
    std::fs::write(d.join("pytorch_model.bin"), [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc]).unwrap();
    let err = err_of(&d);
    assert!(err.contains(&format!("{}: not a zip archive", d.join("pytorch_model.bin").display())), "{err}");
    assert!(err.contains("save_file("), "{err}");

    // A zip that holds no state_dict.
    let d = root.join("empty-zip");
    std::fs::create_dir_all(&d).unwrap();
    write_config(&d, &model);
    std::fs::write(d.join("pytorch_model.bin"), zip_stored(&[("archive/version".into(), b"3\n".to_vec())])).unwrap();
    let err = err_of(&d);
    assert!(err.contains("pytorch_model.bin: no tensors found"), "{err}");

    // A checkpoint that lacks a tensor the config needs names the file.
    let d = root.join("short-bin");
    std::fs::create_dir_all(&d).unwrap();
    write_config(&d, &model);
    write_bin(&d.join("pytorch_model.bin"), &sd[1..]);
    let err = err_of(&d);
    assert!(err.contains("pytorch_model.bin") && err.contains(&format!("no tensor {:?}", sd[0].0)), "{err}");

    // Nothing at all: every file looked for is named.
    let d = root.join("none");
    std::fs::create_dir_all(&d).unwrap();
    write_config(&d, &model);
    let err = err_of(&d);
    assert!(err.contains(&format!("{} not found", d.join("model.safetensors").display())), "{err}");
    assert!(err.contains("pytorch_model.bin") && err.contains("save_pretrained"), "{err}");
}
