/* Many threads sharing one model: threads MODEL.q8b N_THREADS RUNS TEXT [TEXT ...]
 * Opens the model once, classifies the texts on the main thread for reference, then N threads
 * classify them RUNS times each concurrently; every output must equal the reference bit for
 * bit (outputs do not depend on scheduling). Prints "N passed, N failed". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "q8bert.h"

struct job {
    const q8bert_model *model;
    const char *const *texts;
    size_t batch, out_len;
    const float *expected;
    int runs, mismatches, errors;
    char first_error[256];
};

static void *worker(void *arg) {
    struct job *j = arg;
    float *out = malloc(j->out_len * sizeof *out);
    if (out == NULL) {
        j->errors++;
        return NULL;
    }
    for (int r = 0; r < j->runs; r++) {
        /* Only one text per call on some runs, so batches differ between threads. */
        size_t n = (r % 2) ? 1 : j->batch;
        q8bert_status st = q8bert_run_text(j->model, j->texts, NULL, n, out, j->out_len);
        if (st != Q8BERT_STATUS_OK) {
            if (j->errors++ == 0) snprintf(j->first_error, sizeof j->first_error, "%s", q8bert_last_error());
            continue;
        }
        if (memcmp(out, j->expected, (j->out_len / j->batch) * n * sizeof *out) != 0) j->mismatches++;
    }
    free(out);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s MODEL.q8b N_THREADS RUNS TEXT [TEXT ...]\n", argv[0]);
        return 2;
    }
    int nthreads = atoi(argv[2]), runs = atoi(argv[3]);
    size_t batch = (size_t)(argc - 4);
    const char *const *texts = (const char *const *)&argv[4];
    if (nthreads < 1 || nthreads > 256 || runs < 1) return 2;

    q8bert_options opts;
    q8bert_options_init(&opts);
    opts.num_threads = 1; /* parallelism comes from the host threads here */
    q8bert_model *model = NULL;
    if (q8bert_create(argv[1], &opts, &model) != Q8BERT_STATUS_OK) {
        fprintf(stderr, "q8bert_create: %s\n", q8bert_last_error());
        return 1;
    }
    size_t out_len = 0;
    q8bert_text_output_len(model, batch, &out_len);
    float *expected = malloc(out_len * sizeof *expected);
    struct job *jobs = calloc((size_t)nthreads, sizeof *jobs);
    pthread_t *tids = calloc((size_t)nthreads, sizeof *tids);
    if (!expected || !jobs || !tids) return 1;
    if (q8bert_run_text(model, texts, NULL, batch, expected, out_len) != Q8BERT_STATUS_OK) {
        fprintf(stderr, "q8bert_run_text: %s\n", q8bert_last_error());
        return 1;
    }

    for (int t = 0; t < nthreads; t++) {
        jobs[t] = (struct job){model, texts, batch, out_len, expected, runs, 0, 0, ""};
        if (pthread_create(&tids[t], NULL, worker, &jobs[t]) != 0) return 1;
    }
    int passed = 0, failed = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(tids[t], NULL);
        if (jobs[t].mismatches == 0 && jobs[t].errors == 0) {
            passed++;
        } else {
            failed++;
            printf("FAIL thread %d: %d mismatches, %d errors %s\n", t, jobs[t].mismatches, jobs[t].errors, jobs[t].first_error);
        }
    }
    printf("threads: %d threads x %d runs on one model\n%d passed, %d failed\n", nthreads, runs, passed, failed);
    q8bert_free(model);
    free(expected);
    free(jobs);
    free(tids);
    return failed == 0 ? 0 : 1;
}
