package org.q8bert.jna;

import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.NativeLibrary;
import com.sun.jna.Pointer;
import org.q8bert.Q8bertException;
import org.q8bert.spi.NativeBackend;

/**
 * {@link NativeBackend} over JNA direct mapping (static natives bound by {@code
 * Native.register}, the fastest JNA mode). The library is {@code -Dq8bert.library=PATH} if set,
 * else {@code q8bert} on JNA's search path ({@code -Djna.library.path}, the system's).
 */
public final class JnaBackend implements NativeBackend {
    static {
        if (Native.POINTER_SIZE != 8) {
            throw new UnsupportedOperationException("q8bert's Java binding needs a 64-bit JVM");
        }
        Native.register(JnaBackend.class, NativeLibrary.getInstance(System.getProperty("q8bert.library", "q8bert")));
    }

    // Handles are passed as long (a 64-bit pointer); q8bert_options is five uint32s, so an int[5]
    // has its layout.
    private static native void q8bert_options_init(int[] opts);

    private static native int q8bert_create(byte[] path, int[] opts, long[] modelOut);

    private static native int q8bert_model_info(long model, Pointer info);

    private static native int q8bert_output_len(long model, long batch, long seqLen, long[] lenOut);

    private static native int q8bert_run(long model, int[] ids, int[] typeIds, int[] mask, long batch, long seqLen,
            float[] out, long outLen);

    private static native int q8bert_tokenize(long model, byte[] a, byte[] b, int[] ids, int[] typeIds, long capacity,
            long[] lenOut);

    private static native int q8bert_text_output_len(long model, long batch, long[] lenOut);

    private static native Pointer q8bert_label_name(long model, long index);

    private static native int q8bert_run_text_prompt(long model, byte[] promptName, byte[] promptText, Pointer textsA,
            Pointer textsB, long batch, float[] out, long outLen);

    private static native long q8bert_prompt_count(long model);

    private static native Pointer q8bert_prompt_name(long model, long index);

    private static native Pointer q8bert_prompt_text(long model, long index);

    private static native Pointer q8bert_default_prompt_name(long model);

    private static native void q8bert_free(long model);

    private static native Pointer q8bert_last_error();

    private static native Pointer q8bert_version();

    private static void check(int status) {
        if (status != 0) {
            // Same Java thread, same OS thread: last_error still describes this failure.
            throw new Q8bertException(status, q8bert_last_error().getString(0, "UTF-8"));
        }
    }

    @Override
    public String version() {
        return q8bert_version().getString(0, "UTF-8");
    }

    @Override
    public long create(byte[] path, int numThreads, int kernel, int flags, int maxSeqLen) {
        int[] opts = new int[5];
        q8bert_options_init(opts);
        opts[1] = numThreads;
        opts[2] = kernel;
        opts[3] = flags;
        opts[4] = maxSeqLen;
        long[] out = new long[1];
        check(q8bert_create(nulTerminated(path), opts, out));
        return out[0];
    }

    @Override
    public void free(long model) {
        q8bert_free(model);
    }

    @Override
    public long[] info(long model) {
        // q8bert_info: 12 uint32, uint64 file_size at offset 48, uint32 max_text_tokens at 56,
        // uint32 activations at 60.
        try (Memory m = new Memory(64)) {
            m.clear();
            check(q8bert_model_info(model, m));
            long[] out = new long[14];
            for (int i = 0; i < 11; i++) {
                out[i] = Integer.toUnsignedLong(m.getInt(4L * (i + 1)));
            }
            out[INFO_FILE_SIZE] = m.getLong(48);
            out[INFO_MAX_TEXT_TOKENS] = Integer.toUnsignedLong(m.getInt(56));
            out[INFO_ACTIVATIONS] = Integer.toUnsignedLong(m.getInt(60));
            return out;
        }
    }

    @Override
    public String labelName(long model, int index) {
        Pointer p = q8bert_label_name(model, index);
        return p == null ? null : p.getString(0, "UTF-8");
    }

    @Override
    public int promptCount(long model) {
        return Math.toIntExact(q8bert_prompt_count(model));
    }

    @Override
    public String promptName(long model, int index) {
        Pointer p = q8bert_prompt_name(model, index);
        return p == null ? null : p.getString(0, "UTF-8");
    }

    @Override
    public String promptText(long model, int index) {
        Pointer p = q8bert_prompt_text(model, index);
        return p == null ? null : p.getString(0, "UTF-8");
    }

    @Override
    public String defaultPromptName(long model) {
        Pointer p = q8bert_default_prompt_name(model);
        return p == null ? null : p.getString(0, "UTF-8");
    }

    @Override
    public float[] runTextPrompt(long model, byte[] promptName, byte[][] texts, byte[][] pairs) {
        long[] len = new long[1];
        check(q8bert_text_output_len(model, texts.length, len));
        float[] out = new float[Math.toIntExact(len[0])];
        byte[] name = promptName == null ? null : java.util.Arrays.copyOf(promptName, promptName.length + 1);
        try (Memory a = cStrings(texts); Memory b = pairs == null ? null : cStrings(pairs)) {
            check(q8bert_run_text_prompt(model, name, null, a, b, texts.length, out, out.length));
        }
        return out;
    }

    /** One native block: the char* array, then the NUL-terminated strings it points to. */
    private static Memory cStrings(byte[][] texts) {
        long size = 8L * texts.length;
        for (byte[] t : texts) {
            size += t.length + 1;
        }
        Memory m = new Memory(size);
        long at = 8L * texts.length;
        for (int i = 0; i < texts.length; i++) {
            m.setPointer(8L * i, m.share(at));
            m.write(at, texts[i], 0, texts[i].length);
            m.setByte(at + texts[i].length, (byte) 0);
            at += texts[i].length + 1;
        }
        return m;
    }

    @Override
    public float[] runText(long model, byte[][] texts, byte[][] pairs) {
        return runTextPrompt(model, null, texts, pairs);  // q8bert_run_text is the default prompt's call
    }

    @Override
    public float[] run(long model, int[] ids, int[] typeIds, int[] mask, int batch, int seqLen) {
        long[] len = new long[1];
        check(q8bert_output_len(model, batch, seqLen, len));
        float[] out = new float[Math.toIntExact(len[0])];
        check(q8bert_run(model, ids, typeIds, mask, batch, seqLen, out, out.length));
        return out;
    }

    @Override
    public int[] tokenize(long model, byte[] text, int capacity) {
        int[] ids = new int[capacity];
        long[] len = new long[1];
        check(q8bert_tokenize(model, nulTerminated(text), null, ids, null, capacity, len));
        return java.util.Arrays.copyOf(ids, (int) len[0]);
    }

    private static byte[] nulTerminated(byte[] b) {
        return java.util.Arrays.copyOf(b, b.length + 1);
    }
}
