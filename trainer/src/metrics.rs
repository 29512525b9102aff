//! GLUE metrics with Hugging Face `evaluate` key names.

use std::collections::BTreeMap;

pub fn accuracy(pred: &[usize], gold: &[usize]) -> f64 {
    let ok = pred.iter().zip(gold).filter(|(p, g)| p == g).count();
    ok as f64 / pred.len().max(1) as f64
}

/// Binary F1 of the positive class (label 1).
pub fn f1(pred: &[usize], gold: &[usize]) -> f64 {
    let (mut tp, mut fp, mut fn_) = (0f64, 0f64, 0f64);
    for (&p, &g) in pred.iter().zip(gold) {
        match (p == 1, g == 1) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fn_ += 1.0,
            _ => {}
        }
    }
    if tp == 0.0 {
        0.0
    } else {
        2.0 * tp / (2.0 * tp + fp + fn_)
    }
}

/// Matthews correlation (binary), 0 when undefined, as scikit-learn.
pub fn matthews(pred: &[usize], gold: &[usize]) -> f64 {
    let (mut tp, mut tn, mut fp, mut fn_) = (0f64, 0f64, 0f64, 0f64);
    for (&p, &g) in pred.iter().zip(gold) {
        match (p == 1, g == 1) {
            (true, true) => tp += 1.0,
            (false, false) => tn += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fn_ += 1.0,
        }
    }
    let den = ((tp + fp) * (tp + fn_) * (tn + fp) * (tn + fn_)).sqrt();
    if den == 0.0 {
        0.0
    } else {
        (tp * tn - fp * fn_) / den
    }
}

pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// Ranks with ties averaged (as scipy.stats.rankdata).
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[idx[k]] = avg;
        }
        i = j + 1;
    }
    r
}

pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

/// The GLUE metrics of a task, keyed without the `eval_` prefix.
pub fn glue_metrics(task: crate::data::Task, outputs: &[Vec<f32>], gold: &[f32]) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    if task.is_regression() {
        let p: Vec<f64> = outputs.iter().map(|o| o[0] as f64).collect();
        let g: Vec<f64> = gold.iter().map(|&v| v as f64).collect();
        m.insert("pearson".into(), pearson(&p, &g));
        m.insert("spearmanr".into(), spearman(&p, &g));
        m.insert("combined_score".into(), (m["pearson"] + m["spearmanr"]) / 2.0);
    } else {
        let p: Vec<usize> = outputs.iter().map(|o| argmax(o)).collect();
        let g: Vec<usize> = gold.iter().map(|&v| v as usize).collect();
        use crate::data::Task::*;
        match task {
            Cola => {
                m.insert("matthews_correlation".into(), matthews(&p, &g));
            }
            Mrpc => {
                m.insert("accuracy".into(), accuracy(&p, &g));
                m.insert("f1".into(), f1(&p, &g));
                m.insert("combined_score".into(), (m["accuracy"] + m["f1"]) / 2.0);
            }
            _ => {
                m.insert("accuracy".into(), accuracy(&p, &g));
            }
        }
    }
    m
}

/// Fraction of rows where two models agree (same argmax; for regression, outputs within 0.05 of
/// the 0..5 label range = 0.25) and the largest absolute output difference.
pub fn agreement(task: crate::data::Task, a: &[Vec<f32>], b: &[Vec<f32>]) -> (f64, f32) {
    let mut agree = 0usize;
    let mut max_diff = 0f32;
    for (x, y) in a.iter().zip(b) {
        let d = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        max_diff = max_diff.max(d);
        let same = if task.is_regression() { d <= 0.25 } else { argmax(x) == argmax(y) };
        agree += same as usize;
    }
    (agree as f64 / a.len().max(1) as f64, max_diff)
}

pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn metrics_match_known_values() {
        let p = [1, 0, 1, 1, 0, 0];
        let g = [1, 0, 0, 1, 1, 0];
        assert!((accuracy(&p, &g) - 4.0 / 6.0).abs() < 1e-12);
        assert!((f1(&p, &g) - 2.0 / 3.0).abs() < 1e-12);
        // tp=2 tn=2 fp=1 fn=1 -> (4-1)/sqrt(3*3*3*3) = 1/3
        assert!((matthews(&p, &g) - 1.0 / 3.0).abs() < 1e-12);
        let x = [1.0, 2.0, 3.0, 4.0];
        let y = [2.0, 4.0, 6.0, 9.0];
        assert!((spearman(&x, &y) - 1.0).abs() < 1e-12);
        assert!((pearson(&x, &y) - 0.994376712684369).abs() < 1e-12);
        // ties: scipy spearmanr([1,2,2,3],[1,3,2,4]) = 0.9486832980505138
        assert!((spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]) - 0.9486832980505138).abs() < 1e-12);
        let a = vec![vec![0.1, 0.9], vec![0.8, 0.2], vec![0.4, 0.6]];
        let b = vec![vec![0.2, 0.7], vec![0.3, 0.5], vec![0.4, 0.61]];
        let (agree, diff) = agreement(crate::data::Task::Sst2, &a, &b);
        assert!((agree - 2.0 / 3.0).abs() < 1e-12 && (diff - 0.5).abs() < 1e-6);
        let (agree, _) = agreement(crate::data::Task::Stsb, &[vec![3.0], vec![1.0]], &[vec![3.2], vec![1.3]]);
        assert_eq!(agree, 0.5);
    }
}
