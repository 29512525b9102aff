package org.q8bert;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * The binding conformance suite (DIR from {@code cargo run --example make_conformance_model --
 * DIR}): outputs bit-equal to the Rust API's, the library's errors as Q8bertException, and no
 * leak over repeated open/close. A plain main (no JUnit offline): prints one line per check and
 * "N passed, N failed"; exit 1 on any failure.
 *
 * <p>java -cp jna.jar:q8bert.jar:tests org.q8bert.ConformanceTest DIR
 */
public final class ConformanceTest {
    private static int passed, failed;

    private static void check(boolean ok, String name) {
        if (ok) {
            passed++;
        } else {
            failed++;
        }
        System.out.println((ok ? "ok   " : "FAIL ") + name);
    }

    interface Body {
        void run() throws Exception;
    }

    private static void test(String name, Body body) {
        try {
            body.run();
        } catch (Throwable t) {
            check(false, name + ": " + t);
        }
    }

    private static int[] ints(String s) {
        return s.isEmpty() ? new int[0] : Arrays.stream(s.split(" ")).mapToInt(Integer::parseInt).toArray();
    }

    private static int[] hexes(String s) {
        return Arrays.stream(s.split(" ")).mapToInt(h -> Integer.parseUnsignedInt(h, 16)).toArray();
    }

    private static int[] bits(float[] v) {
        int[] out = new int[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = Float.floatToRawIntBits(v[i]);
        }
        return out;
    }

    private static long rssKiB() throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.startsWith("VmRSS:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        return -1;
    }

    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args.length > 0 ? args[0] : System.getenv("Q8BERT_CONFORMANCE_DIR")).toAbsolutePath();
        Map<String, String> kv = new HashMap<>();
        List<String> texts = new ArrayList<>();
        List<int[]> tokens = new ArrayList<>(), classify = new ArrayList<>(), embed = new ArrayList<>();
        Map<String, List<int[]>> prompted = new HashMap<>();
        Map<String, String> prompts = new HashMap<>();
        List<String> labels = new ArrayList<>();
        List<String> bpeA = new ArrayList<>(), bpeB = new ArrayList<>();
        List<int[]> bpeScores = new ArrayList<>();
        List<String> unigramA = new ArrayList<>(), unigramB = new ArrayList<>();
        List<int[]> unigramScores = new ArrayList<>();
        for (String line : Files.readAllLines(dir.resolve("expected.tsv"), StandardCharsets.UTF_8)) {
            String[] f = line.split("\t", -1);
            switch (f[0]) {
                case "labels": labels.addAll(Arrays.asList(f).subList(1, f.length)); break;
                case "text": texts.add(f[2]); break;
                case "tokens": tokens.add(ints(f[2])); break;
                case "classify": classify.add(hexes(f[2])); break;
                case "embed": embed.add(hexes(f[2])); break;
                case "prompt": prompts.put(f[1], f[2]); break;
                case "bpe_pair": bpeA.add(f[2]); bpeB.add(f[3]); break;
                case "bpe_score": bpeScores.add(hexes(f[2])); break;
                case "unigram_pair": unigramA.add(f[2]); unigramB.add(f[3]); break;
                case "unigram_score": unigramScores.add(hexes(f[2])); break;
                case "prompted": prompted.computeIfAbsent(f[1], k -> new ArrayList<>()).add(hexes(f[3])); break;
                default: kv.put(f[0], f[1]);
            }
        }
        Path cls = dir.resolve("classify.q8b"), emb = dir.resolve("embed.q8b"), corrupt = dir.resolve("corrupt.q8b");

        test("version", () -> check(Model.version().equals(kv.get("version")), "library version matches the suite"));

        test("conformance", () -> {
            try (Model c = Model.open(cls); Model e = Model.open(emb)) {
                check(c.labels().equals(labels), "labels");
                int[] acts = ints(kv.get("activations"));   // classify, embed
                check(acts.length == 2 && c.activations() == acts[0] && e.activations() == acts[1],
                        "activations (static classifier, per-token embedder)");
                for (int i = 0; i < texts.size(); i++) {
                    check(Arrays.equals(c.tokenize(texts.get(i)), tokens.get(i)), "tokenize text " + i);
                }
                float[][] logits = c.classify(texts);
                float[][] vecs = e.embed(texts);
                for (int i = 0; i < texts.size(); i++) {
                    check(Arrays.equals(bits(logits[i]), classify.get(i)), "classify text " + i + " bit-exact");
                    check(Arrays.equals(bits(vecs[i]), embed.get(i)), "embed text " + i + " bit-exact");
                }
                List<String> names = c.classifyLabels(texts);
                for (int i = 0; i < texts.size(); i++) {
                    int best = 0;
                    for (int j = 1; j < logits[i].length; j++) {
                        if (logits[i][j] > logits[i][best]) {
                            best = j;
                        }
                    }
                    check(names.get(i).equals(labels.get(best)), "classifyLabels text " + i + " is the argmax label");
                }
                try {
                    e.classifyLabels(texts);
                    check(false, "classifyLabels on an embedding model rejected");
                } catch (Q8bertException ex) {
                    check(ex.status() == Status.UNSUPPORTED_OPERATION, "classifyLabels on an embedding model: UNSUPPORTED_OPERATION");
                }
                int[] shape = ints(kv.get("run_shape"));
                float[] out = c.run(ints(kv.get("run_ids")), shape[0], null, ints(kv.get("run_mask")));
                check(Arrays.equals(bits(out), hexes(kv.get("run_output"))), "run ids with mask bit-exact");
            }
        });

        test("huge pages", () -> {
            try (Model e = Model.open(emb, new Options().hugePages(true))) {
                float[][] vecs = e.embed(texts);
                for (int i = 0; i < texts.size(); i++) {
                    check(Arrays.equals(bits(vecs[i]), embed.get(i)), "embed text " + i + " bit-exact from the huge-page copy");
                }
            }
        });

        test("prompts", () -> {
            try (Model p = Model.open(dir.resolve(kv.get("prompt_model")))) {
                check(p.prompts().equals(prompts), "prompts");
                check(p.defaultPromptName().equals(kv.get("default_prompt_name")), "default prompt name");
                float[][] def = p.embed(texts), passage = p.embed("passage", texts), none = p.embed("", texts);
                for (int i = 0; i < texts.size(); i++) {
                    check(Arrays.equals(bits(def[i]), prompted.get("default").get(i)), "embed with the default prompt, text " + i);
                    check(Arrays.equals(bits(passage[i]), prompted.get("passage").get(i)), "embed(\"passage\"), text " + i);
                    check(Arrays.equals(bits(none[i]), prompted.get("none").get(i)), "embed(\"\"), text " + i);
                }
                try {
                    p.embed("document", texts);
                    check(false, "unknown prompt rejected");
                } catch (Q8bertException e) {
                    check(e.status() == Status.INVALID_ARGUMENT && e.libraryMessage().contains("query, passage"), "unknown prompt: INVALID_ARGUMENT listing the prompts");
                }
            }
        });

        test("byte-level BPE cross-encoder", () -> {
            try (Model m = Model.open(dir.resolve(kv.get("bpe_model")))) {
                float[][] scores = m.runText(bpeA, bpeB);
                check(bpeA.size() == 4 && scores.length == bpeA.size(), "one score per pair");
                for (int i = 0; i < scores.length; i++) {
                    check(Arrays.equals(bits(scores[i]), bpeScores.get(i)), "pair " + i + " score bit-exact");
                }
            }
        });

        test("SentencePiece Unigram cross-encoder", () -> {
            try (Model m = Model.open(dir.resolve(kv.get("unigram_model")))) {
                float[][] scores = m.runText(unigramA, unigramB);
                check(unigramA.size() == 4 && scores.length == unigramA.size(), "one score per pair");
                for (int i = 0; i < scores.length; i++) {
                    check(Arrays.equals(bits(scores[i]), unigramScores.get(i)), "pair " + i + " score bit-exact");
                }
            }
        });

        test("errors", () -> {
            try {
                Model.open(corrupt).close();
                check(false, "corrupt file rejected");
            } catch (Q8bertException e) {
                check(e.status() == Integer.parseInt(kv.get("corrupt_status")) && e.status() == Status.BAD_MAGIC,
                        "corrupt file: status");
                check(e.libraryMessage().contains(kv.get("corrupt_message")), "corrupt file: library message");
            }
            try {
                Model.open(dir.resolve("missing.q8b")).close();
                check(false, "missing file rejected");
            } catch (Q8bertException e) {
                check(e.status() == Status.IO && e.getMessage().contains("missing.q8b"), "missing file: IO status and path");
            }
            try {
                Model.open(cls, new Options().kernel(77)).close();
                check(false, "bad kernel rejected");
            } catch (Q8bertException e) {
                check(e.status() == Status.UNSUPPORTED_OPTIONS, "bad kernel: UNSUPPORTED_OPTIONS");
            }
            try (Model m = Model.open(cls)) {
                try {
                    m.embed(List.of("x"));
                    check(false, "embed on a classifier rejected");
                } catch (Q8bertException e) {
                    check(e.status() == Status.UNSUPPORTED_OPERATION, "embed on a classifier: UNSUPPORTED_OPERATION");
                }
                try {
                    m.classify(List.of("word ".repeat(100)));
                    check(false, "long text rejected");
                } catch (Q8bertException e) {
                    check(e.status() == Status.SEQUENCE_TOO_LONG, "long text: SEQUENCE_TOO_LONG");
                }
                try {
                    m.run(new int[] {101, 1 << 30, 102}, 1, null, null);
                    check(false, "bad token id rejected");
                } catch (Q8bertException e) {
                    check(e.status() == Status.TOKEN_OUT_OF_RANGE, "bad token id: TOKEN_OUT_OF_RANGE");
                }
            }
            try (Model m = Model.open(cls, new Options().truncate(true).numThreads(1))) {
                check(m.classify(List.of("word ".repeat(100)))[0].length == 2, "truncating model accepts long text");
            }
        });

        test("close", () -> {
            Model m = Model.open(cls);
            m.close();
            m.close();
            try {
                m.classify(List.of("x"));
                check(false, "use after close rejected");
            } catch (Q8bertException e) {
                check(e.getMessage().contains("closed"), "use after close: closed error; close twice is a no-op");
            }
        });

        test("threads", () -> {
            ExecutorService pool = Executors.newFixedThreadPool(8);
            try (Model m = Model.open(cls)) {
                List<Future<Boolean>> results = new ArrayList<>();
                for (int g = 0; g < 8; g++) {
                    final int g0 = g;
                    results.add(pool.submit(() -> {
                        for (int r = 0; r < 20; r++) {
                            int i = (g0 + r) % texts.size();
                            if (!Arrays.equals(bits(m.classify(List.of(texts.get(i)))[0]), classify.get(i))) {
                                return false;
                            }
                        }
                        return true;
                    }));
                }
                boolean all = true;
                for (Future<Boolean> f : results) {
                    all &= f.get();
                }
                check(all, "8 threads share one model, outputs bit-exact");
            } finally {
                pool.shutdown();
            }
        });

        test("leak", () -> {
            String path = cls.toString();
            for (int i = 0; i < 20; i++) {
                try (Model m = Model.open(cls, new Options().numThreads(1))) {
                    m.classify(texts.subList(0, 1));
                }
            }
            System.gc();
            long before = rssKiB();
            for (int i = 0; i < 300; i++) {
                try (Model m = Model.open(cls, new Options().numThreads(1))) {
                    m.classify(texts.subList(0, 1));
                }
            }
            System.gc();
            long after = rssKiB();
            String maps = Files.readString(Path.of("/proc/self/maps"));
            check(!maps.contains(path), "no mapping of the model survives close");
            // The JVM's own heap growth is noise here: the bound is loose, the mapping check exact.
            check(after - before < 32 * 1024, "RSS growth over 300 open/close cycles < 32 MiB (" + (after - before) + " KiB)");
        });

        System.out.println(passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }
}
