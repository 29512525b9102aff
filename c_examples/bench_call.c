/* bench_call MODEL.q8b [CALLS]: median µs of one short-text classification per q8bert_run_text
 * call on one thread, for scripts/bench_bindings.sh. Prints "c <µs>". */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "q8bert.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int calls = argc > 2 ? atoi(argv[2]) : 2000;
    q8bert_options opts;
    q8bert_options_init(&opts);
    opts.num_threads = 1;
    q8bert_model *m = NULL;
    if (q8bert_create(argv[1], &opts, &m) != Q8BERT_STATUS_OK) {
        fprintf(stderr, "%s\n", q8bert_last_error());
        return 1;
    }
    const char *texts[] = {"a gripping, funny film."};
    float out[64];
    double *t = malloc((size_t)calls * sizeof *t);
    if (t == NULL || calls < 1) return 1;
    for (int i = 0; i < calls / 10; i++) q8bert_run_text(m, texts, NULL, 1, out, 64);
    for (int i = 0; i < calls; i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        if (q8bert_run_text(m, texts, NULL, 1, out, 64) != Q8BERT_STATUS_OK) return 1;
        clock_gettime(CLOCK_MONOTONIC, &b);
        t[i] = (double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3;
    }
    qsort(t, (size_t)calls, sizeof *t, cmp);
    printf("c %.2f\n", t[calls / 2]);
    free(t);
    q8bert_free(m);
    return 0;
}
