//! The C examples, compiled with -Wall -Wextra -Wpedantic -Werror against include/q8bert.h and
//! the freshly built libq8bert.so / libq8bert.a, run on a generated model: outputs must equal
//! the Rust API's bit for bit, and the error-path program must pass every check.
//!
//! Cross testing (scripts/test_aarch64.sh): `Q8BERT_C_CC` names the C compiler (default `cc`),
//! `Q8BERT_C_LIB_DIR` a directory with an already built libq8bert for the test's target, and
//! `Q8BERT_C_EMULATOR` the emulator every C program runs under (e.g. `qemu-aarch64 -cpu max`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{tiny_config, Aligned, FpModel};
use q8bert::builder::Head;
use q8bert::model::Pooling;
use q8bert::{Model, Options};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the C libraries once, in their own target directory so this does not wait on the
/// cargo process running the tests.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("Q8BERT_C_LIB_DIR") {
            let dir = PathBuf::from(dir);
            assert!(dir.join("libq8bert.a").exists(), "Q8BERT_C_LIB_DIR={} has no libq8bert.a", dir.display());
            let soname = dir.join("libq8bert.so.0");
            if std::fs::symlink_metadata(&soname).is_err() {
                std::os::unix::fs::symlink("libq8bert.so", &soname).expect("cannot link libq8bert.so.0");
            }
            return dir;
        }
        let target = root().join("target/c-api");
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "q8bert-capi", "--quiet", "--target-dir"])
            .arg(&target)
            .current_dir(root())
            .status()
            .expect("cannot run cargo");
        assert!(status.success(), "building libq8bert failed");
        let dir = target.join("debug");
        // The library's SONAME is libq8bert.so.0 (capi/build.rs): the loader looks for that name.
        let soname = dir.join("libq8bert.so.0");
        if std::fs::symlink_metadata(&soname).is_err() {
            std::os::unix::fs::symlink("libq8bert.so", &soname).expect("cannot link libq8bert.so.0");
        }
        dir
    })
}

fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("q8bert-c-api-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Extra compiler flags for the C programs, e.g. `-fsanitize=address,undefined` (scripts/sanitize.sh).
fn extra_cflags() -> Vec<String> {
    std::env::var("Q8BERT_C_FLAGS").unwrap_or_default().split_whitespace().map(str::to_string).collect()
}

/// Runs a C program, under `$Q8BERT_C_RUNNER` (e.g. valgrind) when set, and under
/// `$Q8BERT_C_EMULATOR` when set.
fn program(exe: &Path) -> Command {
    let runner = std::env::var("Q8BERT_C_RUNNER").unwrap_or_default();
    let emulator = std::env::var("Q8BERT_C_EMULATOR").unwrap_or_default();
    launch(exe, &format!("{runner} {emulator}"))
}

/// Runs a C program under `$Q8BERT_C_EMULATOR` only (never under a checking runner).
fn emulated(exe: &Path) -> Command {
    launch(exe, &std::env::var("Q8BERT_C_EMULATOR").unwrap_or_default())
}

/// `exe` run through the space-separated command prefix `prefix` (none if empty).
fn launch(exe: &Path, prefix: &str) -> Command {
    let mut words = prefix.split_whitespace();
    match words.next() {
        Some(first) => {
            let mut cmd = Command::new(first);
            cmd.args(words).arg(exe);
            cmd
        }
        None => Command::new(exe),
    }
}

/// The C compiler: `$Q8BERT_C_CC` (a cross compiler) or `cc`.
fn cc() -> Command {
    Command::new(std::env::var("Q8BERT_C_CC").ok().filter(|c| !c.is_empty()).unwrap_or_else(|| "cc".into()))
}

fn compile(source: &str, out: &Path, static_link: bool) {
    compile_path(&root().join("c_examples").join(source), out, static_link);
}

/// Compiles one C file against the header and the library (static or shared), warnings as errors.
fn compile_path(source: &Path, out: &Path, static_link: bool) {
    let mut cmd = cc();
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-O1"])
        .args(extra_cflags())
        .arg("-I")
        .arg(root().join("include"))
        .arg(source)
        .arg("-o")
        .arg(out);
    if static_link {
        cmd.arg(lib_dir().join("libq8bert.a")).args(["-lpthread", "-ldl", "-lm"]);
    } else {
        cmd.arg("-L").arg(lib_dir()).arg("-lq8bert").arg("-lm").arg(format!("-Wl,-rpath,{}", lib_dir().display()));
    }
    let result = cmd.output().expect("cannot run cc");
    assert!(result.status.success(), "compiling {} failed:\n{}", source.display(), String::from_utf8_lossy(&result.stderr));
}

fn write_model(dir: &Path) -> (PathBuf, Vec<u8>) {
    let fp = FpModel::random(tiny_config(), Head::Classification { labels: vec!["negative".into(), "positive".into()] }, 42);
    let path = dir.join("tiny.q8b");
    fp.builder().write(&path).unwrap();
    (path.clone(), std::fs::read(path).unwrap())
}

fn parse_outputs(stdout: &str) -> Vec<Vec<f32>> {
    let mut seqs: Vec<Vec<f32>> = Vec::new();
    for line in stdout.lines() {
        if line.starts_with("sequence ") {
            seqs.push(Vec::new());
        } else if let (Some(cur), Ok(v)) = (seqs.last_mut(), line.parse::<f32>()) {
            cur.push(v);
        }
    }
    seqs
}

fn run_ids_matches_rust(static_link: bool) {
    let dir = scratch_dir(if static_link { "static" } else { "shared" });
    let (model_path, bytes) = write_model(&dir);
    let exe = dir.join("run_ids");
    compile("run_ids.c", &exe, static_link);
    let out = program(&exe)
        .arg(&model_path)
        .args(["2", "7", "9", "11", "3", "--", "2", "30", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "run_ids failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let from_c = parse_outputs(&stdout);

    let buf = Aligned::new(&bytes);
    let model = Model::from_bytes(buf.bytes(), &Options::default()).unwrap();
    let mut expected = Vec::new();
    for ids in [&[2, 7, 9, 11, 3][..], &[2, 30, 3][..]] {
        let mut o = vec![0.0f32; 2];
        model.run(ids, None, None, 1, ids.len(), &mut o).unwrap();
        expected.push(o);
    }
    assert_eq!(from_c, expected, "C output differs from the Rust API:\n{stdout}");
    assert!(stdout.contains("label: "), "classification prints a label:\n{stdout}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn c_example_shared_library_matches_rust() {
    run_ids_matches_rust(false);
}

#[test]
fn c_example_static_library_matches_rust() {
    run_ids_matches_rust(true);
}

#[test]
fn c_error_paths() {
    let dir = scratch_dir("errors");
    let (model_path, mut bytes) = write_model(&dir);
    bytes[0] ^= 0xff;
    let corrupt = dir.join("corrupt.q8b");
    std::fs::write(&corrupt, &bytes).unwrap();
    let exe = dir.join("test_errors");
    compile("test_errors.c", &exe, false);
    let out = program(&exe).arg(&model_path).arg(&corrupt).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    assert!(out.status.success() && stdout.contains(" passed, 0 failed"), "C error-path checks failed:\n{stdout}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn c_classify_text_mode_matches_rust() {
    let dir = scratch_dir("classify");
    let fp = FpModel::with_real_vocab(Head::Classification { labels: vec!["negative".into(), "positive".into()] }, 8);
    let path = dir.join("text.q8b");
    fp.builder().write(&path).unwrap();
    let exe = dir.join("classify");
    compile("classify.c", &exe, false);

    let texts = ["a gripping, funny film.", "dull and far too long."];
    let out = program(&exe).arg(&path).args(texts).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));

    let model = Model::open(&path, &Options::default()).unwrap();
    let mut logits = vec![0.0f32; 4];
    model.run_text(&texts, None, &mut logits).unwrap();
    let labels: Vec<&str> = stdout.lines().filter_map(|l| l.trim().strip_prefix("label: ")).collect();
    let expected: Vec<&str> = logits.chunks(2).map(|l| if l[1] > l[0] { "positive" } else { "negative" }).collect();
    assert_eq!(labels, expected, "{stdout}");
    // Invalid UTF-8 on the command line is reported, not a crash.
    let bad_arg = {
        use std::os::unix::ffi::OsStringExt;
        std::ffi::OsString::from_vec(vec![b'o', b'k', 0xff])
    };
    let bad = program(&exe).arg(&path).arg(bad_arg).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("UTF-8"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn c_threads_share_one_model() {
    let dir = scratch_dir("threads");
    let fp = FpModel::with_real_vocab(Head::Classification { labels: vec!["negative".into(), "positive".into()] }, 9);
    let path = dir.join("text.q8b");
    fp.builder().write(&path).unwrap();
    let exe = dir.join("threads");
    let built = cc()
        .args(["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-O1", "-pthread", "-I"])
        .arg(root().join("include"))
        .arg(root().join("c_examples/threads.c"))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(lib_dir())
        .arg("-lq8bert")
        .arg(format!("-Wl,-rpath,{}", lib_dir().display()))
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let out = emulated(&exe).arg(&path).args(["6", "20", "a gripping, funny film.", "Dull.", "東京 🎉"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("6 passed, 0 failed"), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(dir).ok();
}

/// The README's "Use from C" snippets exactly as written: compiled with -Werror and run on a
/// classifier and on an embedding model. The classifier snippet given an embedding model must
/// refuse it (it once printed q8bert_label_name's NULL and crashed).
#[test]
fn readme_c_snippets_check_statuses_and_run() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = &readme[readme.find("## Use from C\n").unwrap()..readme.find("## Use from Rust\n").unwrap()];
    let blocks: Vec<&str> = section.split("```c\n").skip(1).map(|b| &b[..b.find("```").unwrap()]).collect();
    assert_eq!(blocks.len(), 4, "the ok() helper, token ids, a classifier, an embedding model");
    let source = format!(
        "#include <stdint.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include \"q8bert.h\"\n{}\n\
         static int ids_snippet(void) {{\n{}\nreturn 0;\n}}\n\
         static int classifier_snippet(q8bert_model *model) {{\n{}\nreturn 0;\n}}\n\
         static int embedding_snippet(q8bert_model *model) {{\n{}\nreturn 0;\n}}\n\
         int main(int argc, char **argv) {{\n\
             if (argc == 2) return ids_snippet();\n\
             q8bert_model *model = NULL;\n\
             if (!ok(q8bert_create(argv[2], NULL, &model))) return 1;\n\
             int rc = strcmp(argv[1], \"classifier\") == 0 ? classifier_snippet(model) : embedding_snippet(model);\n\
             q8bert_free(model);\n\
             return rc;\n\
         }}\n",
        blocks[0], blocks[1], blocks[2], blocks[3]
    );
    let dir = scratch_dir("readme");
    std::fs::write(dir.join("readme.c"), source).unwrap();
    let exe = dir.join("readme");
    // The README's C must compile as written (-Werror).
    compile_path(&dir.join("readme.c"), &exe, false);

    let classifier = dir.join("model.q8b");
    FpModel::with_real_vocab(Head::Classification { labels: vec!["negative".into(), "positive".into()] }, 5).builder().write(&classifier).unwrap();
    let embedding = dir.join("minilm.q8b");
    FpModel::with_real_vocab(Head::Embedding { pooling: Pooling::Mean, normalize: true }, 6).builder().write(&embedding).unwrap();
    let run = |args: &[&Path]| {
        let out = program(&exe).args(args).current_dir(&dir).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };

    // Token ids: "model.q8b" in the working directory, as the snippet says.
    let (code, stdout, stderr) = run(&[Path::new("ids")]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("2 floats"), "{stdout}");

    let (code, stdout, stderr) = run(&[Path::new("classifier"), &classifier]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let model = Model::open(&classifier, &Options::default()).unwrap();
    let texts = ["a gripping, funny film.", "dull and far too long."];
    let mut logits = vec![0.0f32; 4];
    model.run_text(&texts, None, &mut logits).unwrap();
    let expected: Vec<String> = texts.iter().zip(logits.chunks(2)).map(|(t, l)| format!("{t} -> {}", if l[1] > l[0] { "positive" } else { "negative" })).collect();
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected);

    let (code, stdout, stderr) = run(&[Path::new("embedding"), &embedding]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let model = Model::open(&embedding, &Options::default()).unwrap();
    let texts = ["a gripping, funny film.", "a moving and funny movie."];
    let mut emb = vec![0.0f32; model.text_output_len(2)];
    model.run_text(&texts, None, &mut emb).unwrap();
    let dim = emb.len() / 2;
    let dot: f32 = (0..dim).map(|j| emb[j] * emb[dim + j]).sum();
    let printed: f32 = stdout.trim().strip_prefix("similarity ").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{stdout}"));
    assert!((printed - dot).abs() <= 1e-3, "C printed {printed}, Rust computes {dot}");

    // The classifier snippet on an embedding model: a clear refusal, not a crash.
    let (code, stdout, stderr) = run(&[Path::new("classifier"), &embedding]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("not a two-label classifier"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}
