/* The C peer of bench_encode.py: the library's own speed on the same texts, batches and threads.
 *   c_batches MODEL TEXTS BATCH THREADS pass  REPEATS   -> "c_pass <s> ..." seconds per pass over
 *       all lines of TEXTS (one text per line, already in the order Python batches them), in
 *       consecutive q8bert_run_text calls of BATCH texts; one warm-up pass, then REPEATS passes.
 *   c_batches MODEL TEXTS BATCH THREADS calls CALLS   -> "c_call <us> <us>": median µs of one
 *       q8bert_run_text call on the first BATCH lines, after CALLS/10 warm-up calls: wall time,
 *       then the calling thread's CPU time.
 * Output buffers are allocated once (what a C user would do). Truncation on, as Python's side. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "q8bert.h"

static double clock_seconds(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double now(void) { return clock_seconds(CLOCK_MONOTONIC); }

/* This thread's CPU time (Python's time.thread_time): descheduled time is not counted. With
 * THREADS = 1 the library runs on the calling thread. */
static double thread_now(void) { return clock_seconds(CLOCK_THREAD_CPUTIME_ID); }

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: c_batches MODEL TEXTS BATCH THREADS pass|calls N\n");
        return 2;
    }
    size_t batch = (size_t)atol(argv[3]);
    int reps = atoi(argv[6]);
    q8bert_options opts;
    q8bert_options_init(&opts);
    opts.num_threads = (uint32_t)atoi(argv[4]);
    opts.flags |= Q8BERT_FLAG_TRUNCATE;
    q8bert_model *m = NULL;
    if (q8bert_create(argv[1], &opts, &m) != Q8BERT_STATUS_OK) {
        fprintf(stderr, "%s\n", q8bert_last_error());
        return 1;
    }
    FILE *f = fopen(argv[2], "r");
    if (f == NULL || batch == 0 || reps < 1) return 1;
    size_t n = 0, cap = 1024;
    char **texts = malloc(cap * sizeof *texts);
    char *line = NULL;
    size_t len = 0;
    ssize_t got;
    while ((got = getline(&line, &len, f)) >= 0) {
        if (got > 0 && line[got - 1] == '\n') line[got - 1] = '\0';
        if (n == cap) texts = realloc(texts, (cap *= 2) * sizeof *texts);
        texts[n++] = strdup(line);
    }
    fclose(f);
    size_t out_len = 0;
    q8bert_text_output_len(m, batch, &out_len);
    float *out = malloc(out_len * sizeof *out);
    if (strcmp(argv[5], "pass") == 0) {
        double *t = malloc((size_t)(reps + 1) * sizeof *t);
        for (int r = 0; r <= reps; r++) {
            double t0 = now();
            for (size_t i = 0; i < n; i += batch) {
                size_t k = n - i < batch ? n - i : batch;
                if (q8bert_run_text(m, (const char *const *)texts + i, NULL, k, out, out_len) != Q8BERT_STATUS_OK) {
                    fprintf(stderr, "%s\n", q8bert_last_error());
                    return 1;
                }
            }
            t[r] = now() - t0;
        }
        printf("c_pass");
        for (int r = 1; r <= reps; r++) printf(" %.6f", t[r]);
        printf("\n");
    } else {
        size_t k = n < batch ? n : batch;
        double *t = malloc((size_t)reps * sizeof *t), *c = malloc((size_t)reps * sizeof *c);
        for (int i = 0; i < reps / 10; i++) q8bert_run_text(m, (const char *const *)texts, NULL, k, out, out_len);
        for (int i = 0; i < reps; i++) {
            double t0 = now(), c0 = thread_now();
            if (q8bert_run_text(m, (const char *const *)texts, NULL, k, out, out_len) != Q8BERT_STATUS_OK) return 1;
            c[i] = (thread_now() - c0) * 1e6;
            t[i] = (now() - t0) * 1e6;
        }
        qsort(t, (size_t)reps, sizeof *t, cmp);
        qsort(c, (size_t)reps, sizeof *c, cmp);
        printf("c_call %.3f %.3f\n", t[reps / 2], c[reps / 2]);
    }
    q8bert_free(m);
    return 0;
}
