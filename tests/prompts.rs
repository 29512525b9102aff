//! sentence-transformers prompts (`config_sentence_transformers.json`: e5's and bge's
//! "query: "): a named prompt is its text put in front of every first text, the model's default
//! prompt applies when none is named, an unknown name lists the known ones, and with the Pooling
//! module's `include_prompt: false` pooling leaves [CLS] and the prompt's tokens out, exactly as
//! sentence-transformers' `attention_mask[:, :prompt_length] = 0` does.

mod common;

use common::{Aligned, FpModel};
use q8bert::builder::{Head, Pooling};
use q8bert::{Model, Options, Prompt, Status};

const PROMPTS: [(&str, &str); 2] = [("query", "query: "), ("passage", "passage : ")];
const TEXTS: [&str; 3] = ["the cat sat on the mat", "a dog", "the house ran away from the dog and the cat"];

fn bytes(head: Head, default: Option<&str>, include_prompt: bool) -> Vec<u8> {
    let fp = FpModel::with_real_vocab(head, 31);
    let mut b = fp.builder();
    b.prompts(PROMPTS.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect(), default).unwrap();
    b.include_prompt(include_prompt);
    b.to_bytes().unwrap()
}

fn run(m: &Model, prompt: Prompt, texts: &[&str]) -> Vec<f32> {
    let mut out = vec![0.0; m.text_output_len(texts.len())];
    m.run_text_prompt(prompt, texts, None, &mut out).unwrap();
    out
}

fn prefixed(prompt: &str) -> Vec<String> {
    TEXTS.iter().map(|t| format!("{prompt}{t}")).collect()
}

#[test]
fn a_named_prompt_is_its_text_in_front_of_every_text() {
    let b = bytes(Head::Embedding { pooling: Pooling::Mean, normalize: true }, None, true);
    let a = Aligned::new(&b);
    let m = Model::from_bytes(a.bytes(), &Options::default()).unwrap();
    assert_eq!(m.prompts().len(), 2);
    assert_eq!(m.default_prompt_name(), None);
    for (name, text) in PROMPTS {
        let by_hand = prefixed(text);
        let by_hand: Vec<&str> = by_hand.iter().map(String::as_str).collect();
        assert_eq!(run(&m, Prompt::Name(name), &TEXTS), run(&m, Prompt::None, &by_hand), "prompt {name}");
        assert_eq!(run(&m, Prompt::Text(text), &TEXTS), run(&m, Prompt::None, &by_hand));
    }
    // No default: run_text is the texts alone, and a prompt changes the embedding.
    let mut plain = vec![0.0; m.text_output_len(TEXTS.len())];
    m.run_text(&TEXTS, None, &mut plain).unwrap();
    assert_eq!(plain, run(&m, Prompt::None, &TEXTS));
    assert_ne!(plain, run(&m, Prompt::Name("query"), &TEXTS));

    let mut out = vec![0.0; m.text_output_len(1)];
    let e = m.run_text_prompt(Prompt::Name("document"), &["x"], None, &mut out).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    assert!(e.message.contains("\"document\"") && e.message.contains("query, passage"), "{}", e.message);
}

#[test]
fn the_default_prompt_applies_unless_the_caller_asks_for_none() {
    let b = bytes(Head::Embedding { pooling: Pooling::Mean, normalize: true }, Some("query"), true);
    assert_eq!(u16::from_le_bytes([b[10], b[11]]), 5, "a default prompt needs format 1.5");
    let a = Aligned::new(&b);
    let m = Model::from_bytes(a.bytes(), &Options::default()).unwrap();
    assert_eq!(m.default_prompt_name(), Some("query"));
    let mut out = vec![0.0; m.text_output_len(TEXTS.len())];
    m.run_text(&TEXTS, None, &mut out).unwrap();
    assert_eq!(out, run(&m, Prompt::Name("query"), &TEXTS));
    let by_hand = prefixed("query: ");
    let by_hand: Vec<&str> = by_hand.iter().map(String::as_str).collect();
    assert_eq!(out, run(&m, Prompt::None, &by_hand));
    assert_ne!(out, run(&m, Prompt::None, &TEXTS));
    // A model without prompts says so.
    let plain = FpModel::with_real_vocab(Head::Embedding { pooling: Pooling::Mean, normalize: true }, 31).bytes();
    assert!(u16::from_le_bytes([plain[10], plain[11]]) < 5, "prompts are written only when asked for");
    let pa = Aligned::new(&plain);
    let pm = Model::from_bytes(pa.bytes(), &Options::default()).unwrap();
    let e = pm.run_text_prompt(Prompt::Name("query"), &["x"], None, &mut out).unwrap_err();
    assert!(e.message.contains("no named prompts"), "{}", e.message);
}

/// include_prompt false: the pooled vector is the pooling of the token states at positions
/// prompt_length.. (prompt_length = the prompt's tokens + [CLS]), computed here from a
/// token-states model with the same weights.
#[test]
fn include_prompt_false_pools_without_the_prompt_tokens() {
    let states_bytes = FpModel::with_real_vocab(Head::TokenStates, 31).bytes();
    let sa = Aligned::new(&states_bytes);
    let states = Model::from_bytes(sa.bytes(), &Options::default()).unwrap();
    let h = states.config().hidden_size;
    for pooling in [Pooling::Mean, Pooling::Max, Pooling::MeanSqrtLen, Pooling::WeightedMean, Pooling::LastToken, Pooling::Cls] {
        let head = Head::Embedding { pooling, normalize: false };
        let b = bytes(head.clone(), None, false);
        assert_eq!(u16::from_le_bytes([b[10], b[11]]), 5, "include_prompt false needs format 1.5");
        let a = Aligned::new(&b);
        let m = Model::from_bytes(a.bytes(), &Options::default()).unwrap();
        assert!(!m.head().include_prompt);
        let got = run(&m, Prompt::Name("query"), &TEXTS);
        // sentence-transformers: len(tokenize(prompt)) - 1.
        let skip = m.encode("query: ", None).unwrap().ids.len() - 1;
        assert_eq!(skip, 3, "[CLS] query :");
        let with_prompt = Aligned::new(&bytes(head, None, true)).bytes().to_vec();
        let wa = Aligned::new(&with_prompt);
        let included = run(&Model::from_bytes(wa.bytes(), &Options::default()).unwrap(), Prompt::Name("query"), &TEXTS);
        for (s, text) in TEXTS.iter().enumerate() {
            let full = format!("query: {text}");
            let n = states.encode(&full, None).unwrap().ids.len();
            let mut st = vec![0.0; states.text_output_len(1)];
            states.run_text(&[full.as_str()], None, &mut st).unwrap();
            let row = |i: usize| &st[i * h..(i + 1) * h];
            let kept = skip..n;
            let want: Vec<f32> = (0..h)
                .map(|d| match pooling {
                    Pooling::Cls => row(0)[d],
                    Pooling::LastToken => row(n - 1)[d],
                    Pooling::Max => kept.clone().map(|i| row(i)[d]).fold(f32::NEG_INFINITY, f32::max),
                    Pooling::Mean => kept.clone().map(|i| row(i)[d]).sum::<f32>() / kept.len() as f32,
                    Pooling::MeanSqrtLen => kept.clone().map(|i| row(i)[d]).sum::<f32>() / (kept.len() as f32).sqrt(),
                    Pooling::WeightedMean => {
                        kept.clone().map(|i| (i + 1) as f32 * row(i)[d]).sum::<f32>() / kept.clone().map(|i| (i + 1) as f32).sum::<f32>()
                    }
                })
                .collect();
            let got = &got[s * h..(s + 1) * h];
            for d in 0..h {
                assert!((got[d] - want[d]).abs() <= 1e-5 * (1.0 + want[d].abs()), "{pooling:?} text {s} dim {d}: {} vs {}", got[d], want[d]);
            }
        }
        // Only modes that look at the prompt's tokens change.
        match pooling {
            Pooling::Cls | Pooling::LastToken => assert_eq!(got, included, "{pooling:?}"),
            _ => assert_ne!(got, included, "{pooling:?}"),
        }
        // Without a prompt nothing is left out.
        let ga = run(&m, Prompt::None, &TEXTS);
        let gb = run(&Model::from_bytes(wa.bytes(), &Options::default()).unwrap(), Prompt::None, &TEXTS);
        assert_eq!(ga, gb, "{pooling:?}: no prompt, no tokens left out");
    }
}

#[test]
fn a_prompt_is_cut_with_the_text_at_the_limit() {
    // sentence-transformers tokenizes prompt + text together and truncates the whole.
    let b = bytes(Head::Embedding { pooling: Pooling::Mean, normalize: true }, None, true);
    let a = Aligned::new(&b);
    let opts = Options { max_seq_len: 8, truncation: Some(q8bert::tokenizer::Truncation::LongestFirst), ..Options::default() };
    let m = Model::from_bytes(a.bytes(), &opts).unwrap();
    let long = "the cat sat on the mat and the dog ran away";
    assert_eq!(run(&m, Prompt::Name("query"), &[long]), run(&m, Prompt::None, &["query: the cat sat on the"]));
}
