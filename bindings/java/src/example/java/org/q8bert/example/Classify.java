package org.q8bert.example;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.q8bert.Model;
import org.q8bert.Options;
import org.q8bert.Q8bertException;

/** java -cp jna.jar:q8bert.jar:examples org.q8bert.example.Classify MODEL.q8b "a sentence" [...] */
public final class Classify {
    public static void main(String[] args) {
        List<String> texts = Arrays.asList(args).subList(1, args.length);
        try (Model model = Model.open(Path.of(args[0]), new Options().truncate(true))) {
            float[][] logits = model.classify(texts);
            for (int i = 0; i < texts.size(); i++) {
                int best = 0;
                for (int j = 1; j < logits[i].length; j++) {
                    if (logits[i][j] > logits[i][best]) {
                        best = j;
                    }
                }
                System.out.println(texts.get(i) + "\n  label: " + model.labels().get(best));
            }
        } catch (Q8bertException e) {
            System.err.println("q8bert error " + e.status() + ": " + e.libraryMessage());
            System.exit(1);
        }
    }
}
