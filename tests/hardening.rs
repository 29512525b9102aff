//! Concurrency, memory stability and resource limits: many threads sharing one model give the
//! single-threaded answer bit for bit; create/free cycles do not grow the process; absurd sizes
//! and allocation failure are error statuses, never an abort or a huge allocation.

mod common;

use std::ffi::CStr;
use std::ptr::{null, null_mut};
use std::sync::Mutex;

use common::{tiny_config, Aligned, FpModel, Rng};
use q8bert::builder::Head;
use q8bert::ffi::*;
use q8bert::{Model, Options, Status};

/// The RSS test must not overlap with tests that allocate a lot.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn tiny() -> Vec<u8> {
    FpModel::random(tiny_config(), Head::Classification { labels: vec!["a".into(), "b".into()] }, 11).bytes()
}

struct Case {
    batch: usize,
    seq_len: usize,
    ids: Vec<i32>,
    types: Vec<i32>,
    mask: Vec<i32>,
    expected: Vec<f32>,
}

#[test]
fn eight_threads_share_one_model_bit_exactly() {
    let _g = serial();
    let buf = Aligned::new(&tiny());
    let reference = Model::from_bytes(buf.bytes(), &Options { num_threads: 1, ..Default::default() }).unwrap();
    let mut rng = Rng::new(5);
    let mut cases = Vec::new();
    for (batch, seq_len) in [(1, 1), (1, 24), (2, 7), (3, 24), (5, 3), (8, 16), (4, 1), (6, 11), (8, 24), (2, 2), (7, 5), (1, 13)] {
        let n = batch * seq_len;
        let ids: Vec<i32> = (0..n).map(|_| rng.below(40) as i32).collect();
        let types: Vec<i32> = (0..n).map(|_| rng.below(2) as i32).collect();
        // Random padding, but every sequence keeps its first token.
        let mask: Vec<i32> = (0..n).map(|i| (i % seq_len == 0 || rng.below(4) != 0) as i32).collect();
        let mut expected = vec![0f32; reference.output_len(batch, seq_len)];
        reference.run(&ids, Some(&types), Some(&mask), batch, seq_len, &mut expected).unwrap();
        cases.push(Case { batch, seq_len, ids, types, mask, expected });
    }
    // The shared model has its own 2-thread pool: host threads contend for it.
    let shared = Model::from_bytes(buf.bytes(), &Options { num_threads: 2, ..Default::default() }).unwrap();
    let (threads, runs) = (8, 1000);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (shared, cases) = (&shared, &cases);
            s.spawn(move || {
                let mut out = Vec::new();
                for i in 0..runs {
                    let c = &cases[(t * 7 + i * 5) % cases.len()];
                    out.clear();
                    out.resize(c.expected.len(), f32::NAN);
                    shared.run(&c.ids, Some(&c.types), Some(&c.mask), c.batch, c.seq_len, &mut out).unwrap();
                    let same = out.iter().zip(&c.expected).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "thread {t} run {i}: batch {} x {} differs from the single-threaded reference", c.batch, c.seq_len);
                }
            });
        }
    });
    eprintln!("{threads} threads x {runs} runs over {} batch shapes: all bit-identical", cases.len());
}

/// Whether this test process is emulated by QEMU user mode (scripts/test_aarch64.sh runs the
/// suite under `qemu-aarch64`). QEMU passes the guest's own name through /proc/self/cmdline and
/// /proc/self/exe but not through /proc/self/comm, which the kernel keeps as the emulator's.
/// Tests that measure this process (its RSS, its address-space limit) would measure the emulator
/// there, so exactly those two skip, saying so.
fn under_qemu_user() -> Option<String> {
    let comm = std::fs::read_to_string("/proc/self/comm").ok()?;
    comm.trim().starts_with("qemu-").then(|| comm.trim().to_string())
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn ten_thousand_create_free_cycles_keep_rss_flat() {
    if let Some(emulator) = under_qemu_user() {
        eprintln!("SKIPPED under {emulator}: the RSS measured would be the emulator's");
        return;
    }
    let _g = serial();
    let dir = std::env::temp_dir().join(format!("q8bert-rss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.q8b");
    std::fs::write(&path, tiny()).unwrap();
    let cpath = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let mem = Aligned::new(&tiny());
    let mut opts = std::mem::MaybeUninit::<q8bert_options>::uninit();
    // SAFETY: writable storage for the options, which the call initializes.
    let mut opts = unsafe {
        q8bert_options_init(opts.as_mut_ptr());
        opts.assume_init()
    };
    let cycle = |i: usize, opts: &mut q8bert_options| unsafe {
        // Alternate file (memory map) and buffer, one and two threads, and every third model
        // copied into its own (huge-page) memory; run once each time.
        opts.num_threads = 1 + i.is_multiple_of(10) as u32;
        opts.flags = if i % 3 == 1 { Q8BERT_FLAG_HUGE_PAGES } else { 0 };
        let mut m = null_mut();
        let s = if i.is_multiple_of(2) {
            q8bert_create(cpath.as_ptr(), opts, &mut m)
        } else {
            q8bert_create_from_memory(mem.bytes().as_ptr(), mem.bytes().len(), opts, &mut m)
        };
        assert_eq!(s, Status::Ok);
        let ids = [2, 7, 9, 11, 3];
        let mut out = [0f32; 2];
        assert_eq!(q8bert_run(m, ids.as_ptr(), null(), null(), 1, 5, out.as_mut_ptr(), 2), Status::Ok);
        q8bert_free(m);
    };
    for i in 0..1000 {
        cycle(i, &mut opts);
    }
    let before = rss_bytes();
    for i in 0..10_000 {
        cycle(i, &mut opts);
    }
    let after = rss_bytes();
    std::fs::remove_dir_all(dir).ok();
    eprintln!("RSS after 1,000 warm-up cycles {} KiB, after 10,000 more {} KiB", before / 1024, after / 1024);
    // A leak of even 100 bytes per cycle would show as 1 MB.
    assert!(after <= before + 1024 * 1024, "RSS grew from {before} to {after} bytes over 10,000 create/free cycles");
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(q8bert_last_error()) }.to_string_lossy().into_owned()
}

#[test]
fn sizes_beyond_the_limits_are_errors_before_any_allocation() {
    let _g = serial();
    let buf = Aligned::new(&tiny());
    let model = Model::from_bytes(buf.bytes(), &Options { num_threads: 1, ..Default::default() }).unwrap();
    let mut out = vec![0f32; 64];
    let ids = vec![2i32; 25];
    // Longer than max_position_embeddings (24).
    assert_eq!(model.run(&ids, None, None, 1, 25, &mut out).unwrap_err().status, Status::SequenceTooLong);
    assert_eq!(model.working_memory(1, 25).unwrap_err().status, Status::SequenceTooLong);
    // Absurd batches: rejected from the sizes alone (the output is checked first, then the
    // ids; neither slice is that long, and nothing is allocated).
    for batch in [1usize << 33, usize::MAX / 24, usize::MAX] {
        assert_eq!(model.run(&ids, None, None, batch, 24, &mut out).unwrap_err().status, Status::BufferTooSmall, "batch {batch}");
        assert_eq!(model.working_memory(batch, 24).unwrap_err().status, Status::InvalidArgument, "batch {batch}");
    }
    let mut big_out = vec![0f32; 2 << 20];
    assert_eq!(model.run(&ids, None, None, 1 << 20, 24, &mut big_out).unwrap_err().status, Status::InvalidArgument);
    // Output too small: the message says how much is needed.
    let e = model.run(&ids[..24], None, None, 2, 12, &mut out[..3]).unwrap_err();
    assert_eq!(e.status, Status::BufferTooSmall);
    assert!(e.message.contains("4 are needed"), "{}", e.message);
    // Absurd thread counts are refused before spawning anything.
    let e = Model::from_bytes(buf.bytes(), &Options { num_threads: 1 << 20, ..Default::default() }).err().unwrap();
    assert_eq!(e.status, Status::InvalidArgument);

    // The same through the C API.
    unsafe {
        let mut m = null_mut();
        let mut o = std::mem::zeroed::<q8bert_options>();
        q8bert_options_init(&mut o);
        o.num_threads = u32::MAX;
        assert_eq!(q8bert_create_from_memory(buf.bytes().as_ptr(), buf.bytes().len(), &o, &mut m), Status::InvalidArgument);
        assert!(m.is_null());
        o.num_threads = 1;
        assert_eq!(q8bert_create_from_memory(buf.bytes().as_ptr(), buf.bytes().len(), &o, &mut m), Status::Ok);
        let mut need = 0usize;
        assert_eq!(q8bert_output_len(m, 2, 12, &mut need), Status::Ok);
        assert_eq!(q8bert_run(m, ids.as_ptr(), null(), null(), 2, 12, out.as_mut_ptr(), need - 1), Status::BufferTooSmall);
        assert!(last_error().contains(&format!("{need} are needed")), "{}", last_error());
        assert_eq!(q8bert_run(m, ids.as_ptr(), null(), null(), usize::MAX, 2, out.as_mut_ptr(), 64), Status::InvalidArgument);
        assert_eq!(q8bert_run(m, ids.as_ptr(), null(), null(), 1, 25, out.as_mut_ptr(), 64), Status::SequenceTooLong);
        let mut bytes = 0usize;
        assert_eq!(q8bert_working_memory(m, 4, 24, &mut bytes), Status::Ok);
        assert!(bytes > 4 * 24 * 32 * 4 * 6, "covers at least the hidden-state buffers: {bytes}");
        assert_eq!(q8bert_working_memory(m, 4, 24, null_mut()), Status::NullArgument);
        assert_eq!(q8bert_working_memory(null(), 4, 24, &mut bytes), Status::NullArgument);
        assert_eq!(q8bert_working_memory(m, 0, 24, &mut bytes), Status::InvalidArgument);
        assert_eq!(q8bert_working_memory(m, 1, 25, &mut bytes), Status::SequenceTooLong);
        assert_eq!(q8bert_working_memory(m, usize::MAX, 24, &mut bytes), Status::InvalidArgument);
        q8bert_free(m);
    }
}

/// Allocation failure inside a run is Q8BERT_STATUS_OUT_OF_MEMORY, and the model keeps working.
/// Re-runs this test binary, filtered to this test, as a child whose address space is capped
/// (prlimit) so the cap does not disturb the other tests; the child does the capped run.
#[test]
fn allocation_failure_is_an_error_status() {
    if std::env::var_os("Q8BERT_OOM_CHILD").is_some() {
        return oom_child();
    }
    if std::env::var_os("Q8BERT_SANITIZER").is_some() {
        eprintln!("skipped under a sanitizer (it reserves terabytes of address space)");
        return;
    }
    if let Some(emulator) = under_qemu_user() {
        // The child would be the guest binary exec'd without the emulator, and the cap would
        // apply to the emulator's own reservations.
        eprintln!("SKIPPED under {emulator}: the address-space cap would apply to the emulator");
        return;
    }
    if std::process::Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "allocation_failure_is_an_error_status", "--nocapture", "--test-threads=1"])
        .env("Q8BERT_OOM_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("oom child: OutOfMemory, then Ok"), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
}

/// The child half of `allocation_failure_is_an_error_status`: caps its own address space, then
/// checks that a run needing more fails with OutOfMemory and the next small run works.
fn oom_child() {
    let buf = Aligned::new(&tiny());
    let model = Model::from_bytes(buf.bytes(), &Options { num_threads: 1, ..Default::default() }).unwrap();
    let (batch, seq_len) = (400_000, 24);
    let ids = vec![5i32; batch * seq_len];
    let mut out = vec![0f32; model.output_len(batch, seq_len)];
    let need = model.working_memory(batch, seq_len).unwrap();
    // Cap the address space at what is mapped now plus 16 MiB. Every run first allocates the
    // batch's whole token list (12 bytes per token, here 115 MB), even one that then runs in
    // small sub-batches; it must exceed the cap by more than the 64 MiB a glibc thread arena
    // reserves up front (counted in VmSize already, so allocations inside it escape the cap).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let vm_kib: usize = status.lines().find_map(|l| l.strip_prefix("VmSize:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap();
    let cap = vm_kib * 1024 + (16 << 20);
    let pid = std::process::id().to_string();
    let set = std::process::Command::new("prlimit").args(["--pid", &pid, &format!("--as={cap}")]).status().unwrap();
    assert!(set.success());
    let e = model.run(&ids, None, None, batch, seq_len, &mut out).unwrap_err();
    assert_eq!(e.status, Status::OutOfMemory, "{}", e.message);
    let mut small = [0f32; 2];
    model.run(&[2, 7, 3], None, None, 1, 3, &mut small).unwrap();
    println!("oom child: OutOfMemory, then Ok (needed {need} bytes, cap {cap}; {})", e.message);
}

/// The emulator check above is itself checked: scripts/test_aarch64.sh sets
/// `Q8BERT_EXPECT_QEMU=1` when it runs this suite under qemu-aarch64; everywhere else the
/// tests run natively and the check must say so.
#[test]
fn qemu_detection_matches_how_the_suite_runs() {
    let expected = std::env::var("Q8BERT_EXPECT_QEMU").is_ok_and(|v| v == "1");
    assert_eq!(under_qemu_user().is_some(), expected, "under_qemu_user() = {:?}", under_qemu_user());
}
