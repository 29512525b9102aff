/* Classifies sentences with a q8bert model: text in, label and scores out.
 *
 *   classify MODEL.q8b "a sentence" ["another sentence" ...]
 *   classify MODEL.q8b --pair "first text" "second text"     (sentence-pair tasks)
 *
 * Prints, per input, the most likely label and the softmax score of every label (classification
 * models), the score (regression models), or the embedding's first values (embedding models).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "q8bert.h"

static int fail(const char *what, q8bert_status st) {
    fprintf(stderr, "%s failed: %s\n  detail: %s\n", what, q8bert_status_string(st), q8bert_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.q8b TEXT [TEXT ...]\n       %s MODEL.q8b --pair TEXT_A TEXT_B\n", argv[0], argv[0]);
        return 2;
    }
    int pair = strcmp(argv[2], "--pair") == 0;
    if (pair && argc != 5) {
        fprintf(stderr, "--pair takes exactly two texts\n");
        return 2;
    }
    const char *const *texts_a = (const char *const *)&argv[pair ? 3 : 2];
    const char *const *texts_b = pair ? (const char *const *)&argv[4] : NULL;
    size_t batch = pair ? 1 : (size_t)(argc - 2);

    q8bert_options opts;
    q8bert_options_init(&opts);
    opts.flags |= Q8BERT_FLAG_TRUNCATE; /* long inputs are cut, not rejected */
    q8bert_model *model = NULL;
    q8bert_status st = q8bert_create(argv[1], &opts, &model);
    if (st != Q8BERT_STATUS_OK) return fail("q8bert_create", st);

    q8bert_info info;
    size_t out_len = 0;
    if ((st = q8bert_model_info(model, &info)) != Q8BERT_STATUS_OK || (st = q8bert_text_output_len(model, batch, &out_len)) != Q8BERT_STATUS_OK) {
        q8bert_free(model);
        return fail("q8bert_model_info / q8bert_text_output_len", st);
    }
    float *out = malloc(out_len * sizeof *out);
    if (out == NULL) {
        q8bert_free(model);
        return 1;
    }
    st = q8bert_run_text(model, texts_a, texts_b, batch, out, out_len);
    if (st != Q8BERT_STATUS_OK) {
        free(out);
        q8bert_free(model);
        return fail("q8bert_run_text", st);
    }

    size_t per = out_len / batch;
    for (size_t i = 0; i < batch; i++) {
        const float *o = out + i * per;
        printf("%s", texts_a[i]);
        if (pair) printf(" ||| %s", texts_b[0]);
        printf("\n");
        if (info.head_kind == Q8BERT_HEAD_CLASSIFICATION) {
            size_t best = 0;
            float max = o[0], sum = 0.0f;
            for (size_t j = 1; j < per; j++)
                if (o[j] > max) max = o[j], best = j;
            for (size_t j = 0; j < per; j++) sum += expf(o[j] - max);
            printf("  label: %s\n", q8bert_label_name(model, best));
            for (size_t j = 0; j < per; j++)
                printf("  %-12s %.4f\n", q8bert_label_name(model, j), expf(o[j] - max) / sum);
        } else if (info.head_kind == Q8BERT_HEAD_REGRESSION) {
            printf("  score: %.4f\n", o[0]);
        } else {
            double norm = 0.0;
            for (size_t j = 0; j < per; j++) norm += (double)o[j] * o[j];
            printf("  embedding[%zu]: %.5f %.5f %.5f %.5f ... (norm %.4f)\n", per, o[0], o[1], o[2], o[3], sqrt(norm));
        }
    }
    free(out);
    q8bert_free(model);
    return 0;
}
