//! The checked-in seed corpora of the fuzz targets (`fuzz/seeds/<target>/`) are what this
//! generator writes: the test fails when they drift (a format change makes old seeds useless);
//! `Q8BERT_BLESS=1 cargo test --test fuzz_seeds` rewrites them.

mod common;

use std::path::Path;

use common::{tiny_config, FpModel};
use q8bert::builder::Head;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    if std::env::var_os("Q8BERT_BLESS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
        return;
    }
    let checked_in = std::fs::read(dir.join(name)).unwrap_or_default();
    assert!(checked_in == bytes, "fuzz/seeds/{target}/{name} is stale: regenerate with Q8BERT_BLESS=1 cargo test --test fuzz_seeds");
}

#[test]
fn checked_in_fuzz_seeds_are_current() {
    // load: mode byte (bit 0 reseal, bit 1 verify payload) + a valid file, one per head kind.
    let heads = [
        ("classification", Head::Classification { labels: vec!["a".into(), "b".into()] }),
        ("embedding", Head::Embedding { pooling: q8bert::builder::Pooling::Mean, normalize: true }),
        ("token_states", Head::TokenStates),
    ];
    let mut config = tiny_config();
    config.num_layers = 1;
    config.hidden_size = 16;
    config.intermediate_size = 20;
    config.max_position_embeddings = 8;
    for (i, (name, head)) in heads.into_iter().enumerate() {
        let file = FpModel::random(config, head, 1).bytes();
        write("load", &format!("{name}-resealed"), &[[1u8].as_slice(), &file].concat());
        if i == 0 {
            write("load", &format!("{name}-verified"), &[[2u8].as_slice(), &file].concat());
            // Format 1.2: per-row input scales, f32 biases.
            let per_row = FpModel::random(config, Head::Classification { labels: vec!["a".into(), "b".into()] }, 1).with_per_row_inputs().bytes();
            write("load", &format!("{name}-per-row-resealed"), &[[1u8].as_slice(), &per_row].concat());
            // Format 1.3: per-row embedding scales as well (trainer quantize's default).
            let per_token = FpModel::random(config, Head::Classification { labels: vec!["a".into(), "b".into()] }, 1).with_per_row_inputs().with_per_row_embeddings().bytes();
            write("load", &format!("{name}-per-token-resealed"), &[[1u8].as_slice(), &per_token].concat());
        }
    }
    // load: a byte-level BPE file (format 1.8) cut to 300 tokens and the merges among them.
    let full = FpModel::with_bpe_vocab(Head::Regression, 1);
    let keep = 300usize;
    let mut bpe_config = config;
    bpe_config.vocab_size = keep as u32;
    bpe_config.type_vocab_size = 1;
    let mut bpe = FpModel::random(bpe_config, Head::Regression, 1);
    bpe.vocab = full.vocab[..keep].to_vec();
    let kept: std::collections::HashSet<&String> = bpe.vocab.iter().collect();
    let mut merges = full.bpe_merges.clone().unwrap();
    merges.retain(|(a, b)| kept.contains(a) && kept.contains(b) && kept.contains(&format!("{a}{b}")));
    bpe.bpe_merges = Some(merges);
    write("load", "bpe-resealed", &[[1u8].as_slice(), &bpe.bytes()].concat());
    // load: a SentencePiece Unigram file (format 1.9) cut to 300 pieces, with the smallest
    // charsmap (the real one is 240 kB, over the load target's input limit).
    let full = FpModel::with_unigram_tokenizer_json(include_str!("data/unigram/tokenizer.json"), Head::Regression, 1);
    let mut uni = FpModel::random(bpe_config, Head::Regression, 1);
    // The first 299 pieces, then `<mask>` (XLM-R's last piece).
    uni.vocab = full.vocab[..keep - 1].to_vec();
    uni.vocab.push("<mask>".into());
    let mut u = full.unigram.clone().unwrap();
    u.scores.truncate(keep - 1);
    u.scores.push(0.0);
    u.charsmap = Some(vec![4, 0, 0, 0, 0, 0, 0, 0]);
    uni.unigram = Some(u);
    write("load", "unigram-resealed", &[[1u8].as_slice(), &uni.bytes()].concat());
    // tokenizer: flags (bit 0 truncate, bit 1 pair, bit 2 run, bit 3 byte-level BPE, high nibble
    // limit; 15 = the Unigram model), u16 split, text.
    let texts: [(u8, &str); 12] = [
        (0x00, "Hello, world!"),
        (0x37, "The café's naïve résumé — ÀÉÎ 你好世界 a\u{0301}"),
        (0x26, "unbelievable tokenization of [MASK] and [SEP] tokens"),
        (0x11, "   \t\n\u{200b}\u{feff}   "),
        (0x53, "a,b.c!d?e;f:g (h) [i] {j} \"k\" 'l' $m %n"),
        (0x00, "\u{1F600}\u{1F680} emoji 👍🏽 and control \u{0007}"),
        (0x08, "It's   they'll  we've\u{3000}<mask> <s>x</s> 12abc!!"),
        (0x3f, "Größere Straßen 東京 \u{1F9D1}\u{200D}\u{1F4BB} a <mask> b"),
        (0x0c, "\r\n\t  \u{00a0}\u{2028}'S'LL''ve"),
        (0xf1, "Wo ist der Bahnhof? ｆｕｌｌ ｗｉｄｔｈ ﬁle Ａ\u{301}"),
        (0xf7, "Быстрая лиса и 東京 🎉 e\u{301}\u{327}  <mask>  क्ष 👩🏽\u{200d}💻 🇩🇪🇫 ▁▁x\u{3000}\t"),
        (0xfb, "\u{1100}\u{1161}\u{11a8} ｶ\u{3099} ①\u{301} \u{0}\u{7} \u{2A6D6}\u{2A6D6} <s></s><unk>"),
    ];
    for (i, (flags, t)) in texts.iter().enumerate() {
        let split = (t.len() / 2) as u16;
        write("tokenizer", &format!("text{i}"), &[[*flags].as_slice(), &split.to_le_bytes(), t.as_bytes()].concat());
    }
    // run: batch, seq_len, shape bits, then id/type/mask bytes.
    write("run", "one", &[1, 4, 0, 3, 7, 9, 4]);
    write("run", "batch-mask", &[&[3u8, 6, 0x18][..], &[5u8; 18], &[0u8; 18], &[1u8, 1, 1, 250, 250, 1].repeat(3)].concat());
    write("run", "too-long", &[1, 25, 0, 3]);
    // c_api: op, null bits, then per-op bytes.
    write("c_api", "create", &[0, 0, 1, 20, 0, 0, 0, 1, 3, 0, 1]);
    write("c_api", "run", &[1, 0, 2, 5, 0, 64, 0]);
    write("c_api", "tokenize", &[[0x82u8, 0, 32, 1, 32, 5].as_slice(), b"hello world\0second"].concat());
    write("c_api", "run_text", &[[0x83u8, 0, 2, 8].as_slice(), b"good film\0bad film\0x\0y"].concat());
    write("c_api", "sizes", &[4, 0, 1, 0, 0, 0, 1, 5, 0, 0, 0]);
    write("c_api", "strings", &[5, 0, 220, 0, 0, 0]);
}
