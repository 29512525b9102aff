package org.q8bert;

/** The library's stable status codes (q8bert_status); the common ones by name. */
public final class Status {
    public static final int OK = 0;
    public static final int NULL_ARGUMENT = 1;
    public static final int INVALID_ARGUMENT = 2;
    public static final int BUFFER_TOO_SMALL = 3;
    public static final int SEQUENCE_TOO_LONG = 4;
    public static final int INVALID_UTF8 = 5;
    public static final int TOKEN_OUT_OF_RANGE = 6;
    public static final int UNSUPPORTED_OPTIONS = 7;
    public static final int KERNEL_UNAVAILABLE = 8;
    public static final int UNSUPPORTED_OPERATION = 9;
    public static final int IO = 100;
    public static final int BAD_MAGIC = 201;
    public static final int CHECKSUM_MISMATCH = 221;
    public static final int OUT_OF_MEMORY = 300;

    private Status() {}
}
