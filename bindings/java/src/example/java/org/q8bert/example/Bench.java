package org.q8bert.example;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.q8bert.Model;
import org.q8bert.Options;

/** Median µs of one short-text classification per call: Bench MODEL.q8b [CALLS]; prints "java <µs>". */
public final class Bench {
    public static void main(String[] args) {
        int calls = args.length > 1 ? Integer.parseInt(args[1]) : 2000;
        List<String> texts = List.of("a gripping, funny film.");
        try (Model m = Model.open(Path.of(args[0]), new Options().numThreads(1))) {
            // Longer warm-up than the others: lets the JIT compile the call path.
            for (int i = 0; i < Math.max(2000, calls); i++) {
                m.classify(texts);
            }
            double[] t = new double[calls];
            for (int i = 0; i < calls; i++) {
                long t0 = System.nanoTime();
                m.classify(texts);
                t[i] = (System.nanoTime() - t0) / 1e3;
            }
            Arrays.sort(t);
            System.out.printf("java %.2f%n", t[calls / 2]);
        }
    }
}
