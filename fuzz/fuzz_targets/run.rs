//! `Model::run` on the tiny model with arbitrary batch, length, ids, token types, mask and
//! output size (including lengths that disagree with batch x seq_len). Whatever is accepted
//! must give the same result as running each sequence alone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use q8bert_fuzz::{tiny_model, Input};

fuzz_target!(|data: &[u8]| {
    let model = tiny_model();
    let mut inp = Input(data);
    let batch = inp.u8() as usize % 9;
    let seq_len = inp.u8() as usize % 30; // the model maximum is 24
    let shape = inp.u8();
    let n = batch * seq_len;
    // Usually the right lengths, sometimes off by one to test the checks.
    let adjust = |len: usize, bit: u8| if shape & bit != 0 { len + 1 } else { len };
    let mut vals = |len: usize, f: &dyn Fn(u8) -> i32| -> Vec<i32> { (0..len).map(|_| f(inp.u8())).collect() };
    let ids = vals(adjust(n, 1), &|b| if b == 255 { i32::MIN } else { b as i32 % 42 - 1 });
    let types = vals(adjust(n, 2), &|b| b as i32 % 4 - 1);
    let mask = vals(adjust(n, 4), &|b| if b < 200 { 1 } else { b as i32 % 3 });
    let types = (shape & 8 != 0).then_some(&types[..]);
    let mask = (shape & 16 != 0).then_some(&mask[..]);
    let needed = model.output_len(batch, seq_len);
    let out_len = if shape & 32 != 0 { needed.saturating_sub(1) } else { needed };
    let mut out = vec![f32::NAN; out_len];
    if model.run(&ids, types, mask, batch, seq_len, &mut out).is_err() {
        return;
    }
    // Batch invariance: each sequence alone, its padding removed, gives the same bits.
    let per = model.output_len(1, seq_len);
    for b in 0..batch {
        let row = b * seq_len..(b + 1) * seq_len;
        let keep: Vec<usize> = row.clone().filter(|&i| mask.is_none_or(|m| m[i] == 1)).collect();
        let one_ids: Vec<i32> = keep.iter().map(|&i| ids[i]).collect();
        let one_types: Option<Vec<i32>> = types.map(|t| keep.iter().map(|&i| t[i]).collect());
        if mask.is_some() && keep.len() != seq_len {
            continue; // positions shift when padding is in the middle; covered by the tests
        }
        let mut one = vec![0.0f32; per];
        model.run(&one_ids, one_types.as_deref(), None, 1, seq_len, &mut one).unwrap();
        let got = &out[b * per..(b + 1) * per];
        assert!(got.iter().zip(&one).all(|(a, b)| a.to_bits() == b.to_bits()), "sequence {b} differs alone");
    }
});
