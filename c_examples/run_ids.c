/* Loads a q8bert model and runs it on token ids given on the command line.
 *
 *   run_ids MODEL.q8b ID [ID ...]          one sequence
 *   run_ids MODEL.q8b ID ... -- ID ...     several sequences (padded to the longest)
 *
 * Prints the model info, then each sequence's output floats (%.9g, one per line), or for a
 * classification model also the most likely label. Exit status 0 on success, 1 on error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "q8bert.h"

static int fail(const char *what, q8bert_status st) {
    fprintf(stderr, "%s failed: %s (status %u)\n  detail: %s\n", what, q8bert_status_string(st),
            (unsigned)st, q8bert_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.q8b ID [ID ...] [-- ID ...]\n", argv[0]);
        return 2;
    }
    if (q8bert_version_number() != Q8BERT_VERSION_NUMBER) {
        fprintf(stderr, "header is for q8bert %d, library is %s\n", Q8BERT_VERSION_NUMBER, q8bert_version());
        return 1;
    }

    /* Split the ids into sequences at "--". */
    size_t batch = 1, seq_len = 0, cur = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            batch++;
            cur = 0;
        } else if (++cur > seq_len) {
            seq_len = cur;
        }
    }
    int32_t *ids = calloc(batch * seq_len, sizeof *ids);
    int32_t *mask = calloc(batch * seq_len, sizeof *mask);
    if (ids == NULL || mask == NULL) return 1;
    size_t b = 0, p = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            b++;
            p = 0;
            continue;
        }
        ids[b * seq_len + p] = (int32_t)strtol(argv[i], NULL, 10);
        mask[b * seq_len + p] = 1;
        p++;
    }

    q8bert_options opts;
    q8bert_options_init(&opts);
    q8bert_model *model = NULL;
    q8bert_status st = q8bert_create(argv[1], &opts, &model);
    if (st != Q8BERT_STATUS_OK) return fail("q8bert_create", st);

    q8bert_info info;
    st = q8bert_model_info(model, &info);
    if (st != Q8BERT_STATUS_OK) return fail("q8bert_model_info", st);
    printf("layers=%u hidden=%u heads=%u head_kind=%u labels=%u kernel=%s\n", info.num_layers,
           info.hidden_size, info.num_heads, info.head_kind, info.num_labels,
           q8bert_kernel_name(info.kernel));

    size_t out_len = 0;
    st = q8bert_output_len(model, batch, seq_len, &out_len);
    if (st != Q8BERT_STATUS_OK) return fail("q8bert_output_len", st);
    float *out = malloc(out_len * sizeof *out);
    if (out == NULL) return 1;
    st = q8bert_run(model, ids, NULL, mask, batch, seq_len, out, out_len);
    if (st != Q8BERT_STATUS_OK) return fail("q8bert_run", st);

    size_t per_seq = out_len / batch;
    for (b = 0; b < batch; b++) {
        printf("sequence %zu:\n", b);
        size_t best = 0;
        for (size_t j = 0; j < per_seq; j++) {
            printf("%.9g\n", out[b * per_seq + j]);
            if (out[b * per_seq + j] > out[b * per_seq + best]) best = j;
        }
        if (info.head_kind == Q8BERT_HEAD_CLASSIFICATION)
            printf("label: %s\n", q8bert_label_name(model, best));
    }

    free(out);
    free(ids);
    free(mask);
    q8bert_free(model);
    return 0;
}
