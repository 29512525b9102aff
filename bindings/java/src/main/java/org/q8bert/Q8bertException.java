package org.q8bert;

/** A failure reported by the q8bert library: its status code and its detail message. */
public class Q8bertException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final int status;

    public Q8bertException(int status, String message) {
        super(message + " (status " + status + ")");
        this.status = status;
    }

    /** The library's stable status code ({@link Status}). */
    public int status() {
        return status;
    }

    /** The library's detail, as {@code q8bert_last_error()} gives it. */
    public String libraryMessage() {
        String m = getMessage();
        return m.substring(0, m.lastIndexOf(" (status "));
    }
}
