package org.q8bert;

/** Options for {@link Model#open}; {@code new Options()} is the defaults. */
public final class Options {
    public static final int FLAG_VERIFY_CHECKSUM = 1;
    public static final int FLAG_TRUNCATE = 2;
    public static final int FLAG_NO_TRUNCATE = 4;
    public static final int FLAG_HUGE_PAGES = 8;

    int numThreads;
    int kernel;
    int flags;
    int maxSeqLen;

    /** Threads inside one call; 0 = one per core. */
    public Options numThreads(int n) {
        numThreads = n;
        return this;
    }

    /** Kernel id (0 = auto, 1 scalar, 2 AVX2, 3 AVX-VNNI, 4 AVX512-VNNI, 5 NEON, 6 NEON dotprod, 7 NEON i8mm, 8 AMX). */
    public Options kernel(int k) {
        kernel = k;
        return this;
    }

    /** Fail on long text even where the model truncates (a sentence-transformers text limit). */
    public Options noTruncate(boolean on) {
        flags = on ? flags | FLAG_NO_TRUNCATE : flags & ~FLAG_NO_TRUNCATE;
        return this;
    }

    /** Cut long text longest-first instead of failing. */
    public Options truncate(boolean on) {
        flags = on ? flags | FLAG_TRUNCATE : flags & ~FLAG_TRUNCATE;
        return this;
    }

    /** Hash the whole file at load. */
    public Options verifyChecksum(boolean on) {
        flags = on ? flags | FLAG_VERIFY_CHECKSUM : flags & ~FLAG_VERIFY_CHECKSUM;
        return this;
    }

    /**
     * Copy the model into this process's memory, in transparent huge pages on Linux, instead of
     * mapping the file: a slower open and memory not shared between processes, for faster calls.
     */
    public Options hugePages(boolean on) {
        flags = on ? flags | FLAG_HUGE_PAGES : flags & ~FLAG_HUGE_PAGES;
        return this;
    }

    /** Token limit for text; 0 = the model's maximum. */
    public Options maxSeqLen(int n) {
        maxSeqLen = n;
        return this;
    }
}
