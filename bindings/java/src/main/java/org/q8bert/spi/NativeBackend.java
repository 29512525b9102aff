package org.q8bert.spi;

/**
 * The C API in Java terms: one method per C call, model handles as {@code long} addresses,
 * text and paths as UTF-8 bytes without a terminator (checked free of NUL by the caller). Failing calls throw {@link org.q8bert.Q8bertException} with the
 * library's status and {@code q8bert_last_error()} read on the same thread.
 *
 * <p>The public API ({@link org.q8bert.Model}) only talks to this interface, so another
 * implementation (e.g. on Java 22+'s FFM API, generated with jextract) can replace the JNA one
 * without changing callers.
 */
public interface NativeBackend {
    /** Field order of {@code q8bert_info} as returned by {@link #info}. */
    int INFO_HEAD_KIND = 0, INFO_OUTPUT_DIM = 1, INFO_MAX_SEQ_LEN = 2, INFO_VOCAB_SIZE = 3, INFO_HIDDEN_SIZE = 4,
            INFO_NUM_LAYERS = 5, INFO_NUM_HEADS = 6, INFO_INTERMEDIATE_SIZE = 7, INFO_NUM_LABELS = 8, INFO_KERNEL = 9,
            INFO_NUM_THREADS = 10, INFO_FILE_SIZE = 11, INFO_MAX_TEXT_TOKENS = 12, INFO_ACTIVATIONS = 13;

    String version();

    long create(byte[] path, int numThreads, int kernel, int flags, int maxSeqLen);

    void free(long model);

    long[] info(long model);

    /** NULL from the library becomes null. */
    String labelName(long model, int index);

    /** The flat output of {@code q8bert_run_text}; {@code pairs} may be null. */
    float[] runText(long model, byte[][] texts, byte[][] pairs);

    /**
     * The flat output of {@code q8bert_run_text_prompt}: {@code promptName} null for the model's
     * default prompt, empty for none, else one of its prompts.
     */
    float[] runTextPrompt(long model, byte[] promptName, byte[][] texts, byte[][] pairs);

    /** Number of named prompts ({@code q8bert_prompt_count}). */
    int promptCount(long model);

    /** Name or text of prompt {@code index}; NULL from the library becomes null. */
    String promptName(long model, int index);

    String promptText(long model, int index);

    /** The default prompt's name, or null. */
    String defaultPromptName(long model);

    float[] run(long model, int[] ids, int[] typeIds, int[] mask, int batch, int seqLen);

    /** Token ids of one text (capacity: the model's text token limit). */
    int[] tokenize(long model, byte[] text, int capacity);
}
