//! The loader on arbitrary bytes. The first byte selects the mode: bit 0 reseals both checksums
//! first (otherwise almost every mutation stops at the header checksum), bit 1 requests full
//! payload verification. Accepted files are run once and tokenize once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use q8bert::format::writer::reseal;
use q8bert::format::FileIndex;
use q8bert::{Model, Options};
use q8bert_fuzz::common::Aligned;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, file)) = data.split_first() else { return };
    let mut bytes = file.to_vec();
    if mode & 1 != 0 {
        reseal(&mut bytes);
    }
    let verify = mode & 2 != 0;
    let _ = FileIndex::parse(&bytes, verify);
    let buf = Aligned::new(&bytes);
    let opts = Options { num_threads: 1, verify_checksum: verify, ..Default::default() };
    let Ok(model) = Model::from_bytes(buf.bytes(), &opts) else { return };
    let c = *model.config();
    let len = c.max_position_embeddings.min(5);
    let ids: Vec<i32> = (0..len).map(|i| (i % c.vocab_size) as i32).collect();
    let mut out = vec![0.0f32; model.output_len(1, len)];
    model.run(&ids, None, None, 1, len, &mut out).expect("a valid model runs on valid ids");
    let _ = model.encode("hello, world! [SEP] x", Some("b"));
});
