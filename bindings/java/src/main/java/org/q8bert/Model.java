package org.q8bert;

import java.lang.ref.Cleaner;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import org.q8bert.jna.JnaBackend;
import org.q8bert.spi.NativeBackend;

/**
 * A loaded .q8b model. Thread-safe: many threads may call it at once. Close it (try-with-
 * resources); a {@link Cleaner} frees a forgotten model only as a safety net.
 *
 * <pre>{@code
 * try (Model model = Model.open(Path.of("model.q8b"), new Options().truncate(true))) {
 *     float[][] logits = model.classify(List.of("a gripping, funny film."));
 * }
 * }</pre>
 */
public final class Model implements AutoCloseable {
    public static final int HEAD_CLASSIFICATION = 1, HEAD_REGRESSION = 2, HEAD_EMBEDDING = 3, HEAD_TOKEN_STATES = 4;
    /** {@link #activations()}: one scale per layer (the Q8BERT paper), a scale per token computed at run time, or both kinds. */
    public static final int ACTIVATIONS_STATIC = 0, ACTIVATIONS_PER_ROW = 1, ACTIVATIONS_MIXED = 2;

    private static final Cleaner CLEANER = Cleaner.create();
    private static volatile NativeBackend backend;

    /** The native interface in use (JNA today). */
    static NativeBackend backend() {
        NativeBackend b = backend;
        if (b == null) {
            synchronized (Model.class) {
                if (backend == null) {
                    backend = new JnaBackend();
                }
                b = backend;
            }
        }
        return b;
    }

    /** Owns the native handle; shared with the cleaner, so it must not refer to the Model. */
    private static final class Handle implements Runnable {
        // Calls hold the read lock; close holds the write lock, so it waits for calls in flight.
        final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
        long ptr;

        Handle(long ptr) {
            this.ptr = ptr;
        }

        @Override
        public void run() {
            lock.writeLock().lock();
            try {
                if (ptr != 0) {
                    backend().free(ptr);
                    ptr = 0;
                }
            } finally {
                lock.writeLock().unlock();
            }
        }
    }

    private final Handle handle;
    private final Cleaner.Cleanable cleanable;
    private final long[] info;
    private final List<String> labels;
    private final Map<String, String> prompts;
    private final String defaultPromptName;

    private Model(long ptr) {
        handle = new Handle(ptr);
        cleanable = CLEANER.register(this, handle);
        try {
            info = backend().info(ptr);
        } catch (RuntimeException e) {
            cleanable.clean();
            throw e;
        }
        List<String> names = new ArrayList<>();
        if (headKind() == HEAD_CLASSIFICATION) {
            for (int i = 0; i < info[NativeBackend.INFO_NUM_LABELS]; i++) {
                names.add(backend().labelName(ptr, i));
            }
        }
        labels = Collections.unmodifiableList(names);
        Map<String, String> p = new LinkedHashMap<>();
        for (int i = 0; i < backend().promptCount(ptr); i++) {
            p.put(backend().promptName(ptr, i), backend().promptText(ptr, i));
        }
        prompts = Collections.unmodifiableMap(p);
        defaultPromptName = backend().defaultPromptName(ptr);
    }

    public static Model open(Path path) {
        return open(path, new Options());
    }

    public static Model open(Path path, Options o) {
        byte[] p = utf8(path.toString());
        return new Model(backend().create(p, o.numThreads, o.kernel, o.flags, o.maxSeqLen));
    }

    /** The library's version, "MAJOR.MINOR.PATCH". */
    public static String version() {
        return backend().version();
    }

    /** Frees the model once calls in progress finish. Idempotent. */
    @Override
    public void close() {
        cleanable.clean();
    }

    public int headKind() {
        return (int) info[NativeBackend.INFO_HEAD_KIND];
    }

    /** Floats per sequence. */
    public int outputDim() {
        return (int) info[NativeBackend.INFO_OUTPUT_DIM];
    }

    public int hiddenSize() {
        return (int) info[NativeBackend.INFO_HIDDEN_SIZE];
    }

    public int maxTextTokens() {
        return (int) info[NativeBackend.INFO_MAX_TEXT_TOKENS];
    }

    /** How the linear layers quantize their inputs: one of the {@code ACTIVATIONS_*} constants. */
    public int activations() {
        return (int) info[NativeBackend.INFO_ACTIVATIONS];
    }

    /** Class names of a classification model; empty for other heads. */
    public List<String> labels() {
        return labels;
    }

    /** The model's sentence-transformers prompts, name to text (e.g. "query" to "query: "). */
    public Map<String, String> prompts() {
        return prompts;
    }

    /** The prompt {@link #embed(List)} and {@link #runText} put in front of every text, or null. */
    public String defaultPromptName() {
        return defaultPromptName;
    }

    /**
     * Per text: the sentence embedding with one of the model's prompts in front, as
     * sentence-transformers' {@code encode(texts, prompt_name=...)}; "" for no prompt.
     */
    public float[][] embed(String promptName, List<String> texts) {
        if (headKind() != HEAD_EMBEDDING) {
            throw new Q8bertException(Status.UNSUPPORTED_OPERATION, "embed needs an embedding model");
        }
        return runText(utf8(promptName), texts, null);
    }

    /**
     * Per text: the logits (classification) or score (regression), like Python's {@code predict}.
     * {@link #classifyLabels} gives label names, like Python's {@code classify}.
     */
    public float[][] classify(List<String> texts) {
        if (headKind() != HEAD_CLASSIFICATION && headKind() != HEAD_REGRESSION) {
            throw new Q8bertException(Status.UNSUPPORTED_OPERATION, "classify needs a classification or regression model");
        }
        return runText(texts, null);
    }

    /**
     * Per text: the predicted label name (the argmax of {@link #classify}'s logits, the first on a
     * tie), like Python's {@code classify}. Classification models only.
     */
    public List<String> classifyLabels(List<String> texts) {
        if (headKind() != HEAD_CLASSIFICATION) {
            throw new Q8bertException(Status.UNSUPPORTED_OPERATION, "classifyLabels needs a classification model");
        }
        float[][] logits = runText(texts, null);
        List<String> names = new ArrayList<>(logits.length);
        for (float[] row : logits) {
            int best = 0;
            for (int j = 1; j < row.length; j++) {
                if (row[j] > row[best]) {
                    best = j;
                }
            }
            names.add(labels.get(best));
        }
        return names;
    }

    /** Per text: the sentence embedding. */
    public float[][] embed(List<String> texts) {
        if (headKind() != HEAD_EMBEDDING) {
            throw new Q8bertException(Status.UNSUPPORTED_OPERATION, "embed needs an embedding model");
        }
        return runText(texts, null);
    }

    /** Tokenizes and runs texts (pairs null, or one second text per text), with the default prompt. */
    public float[][] runText(List<String> texts, List<String> pairs) {
        return runText(null, texts, pairs);
    }

    /** promptName: null for the model's default prompt, empty for none, else a named prompt. */
    private float[][] runText(byte[] promptName, List<String> texts, List<String> pairs) {
        if (pairs != null && pairs.size() != texts.size()) {
            throw new Q8bertException(Status.INVALID_ARGUMENT, texts.size() + " texts but " + pairs.size() + " pair texts");
        }
        if (texts.isEmpty()) {
            return new float[0][];
        }
        byte[][] a = utf8All(texts);
        byte[][] b = pairs == null ? null : utf8All(pairs);
        float[] flat;
        handle.lock.readLock().lock();
        try {
            flat = backend().runTextPrompt(live(), promptName, a, b);
        } finally {
            handle.lock.readLock().unlock();
        }
        int per = flat.length / texts.size();
        float[][] out = new float[texts.size()][];
        for (int i = 0; i < out.length; i++) {
            out[i] = java.util.Arrays.copyOfRange(flat, i * per, (i + 1) * per);
        }
        return out;
    }

    /**
     * Runs {@code batch} sequences of token ids, row-major [batch][ids.length / batch];
     * typeIds (null = zeros) and mask (null = ones) have the shape of ids. Returns the flat output.
     */
    public float[] run(int[] ids, int batch, int[] typeIds, int[] mask) {
        if (batch <= 0 || ids.length == 0 || ids.length % batch != 0) {
            throw new Q8bertException(Status.INVALID_ARGUMENT, ids.length + " ids do not split into " + batch + " sequences");
        }
        if ((typeIds != null && typeIds.length != ids.length) || (mask != null && mask.length != ids.length)) {
            throw new Q8bertException(Status.INVALID_ARGUMENT, "typeIds and mask must have the length of ids");
        }
        handle.lock.readLock().lock();
        try {
            return backend().run(live(), ids, typeIds, mask, batch, ids.length / batch);
        } finally {
            handle.lock.readLock().unlock();
        }
    }

    /** Token ids of text, [CLS] ... [SEP]. */
    public int[] tokenize(String text) {
        byte[] t = utf8(text);
        handle.lock.readLock().lock();
        try {
            return backend().tokenize(live(), t, maxTextTokens());
        } finally {
            handle.lock.readLock().unlock();
        }
    }

    private long live() {
        if (handle.ptr == 0) {
            throw new Q8bertException(Status.INVALID_ARGUMENT, "model is closed");
        }
        return handle.ptr;
    }

    private static byte[] utf8(String s) {
        if (s.indexOf('\0') >= 0) {
            throw new Q8bertException(Status.INVALID_ARGUMENT, "text contains a NUL character");
        }
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static byte[][] utf8All(List<String> texts) {
        byte[][] out = new byte[texts.size()][];
        for (int i = 0; i < out.length; i++) {
            out[i] = utf8(texts.get(i));
        }
        return out;
    }
}
