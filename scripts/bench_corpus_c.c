/* The C peer of scripts/bench_corpus.py: sentence embeddings of a corpus through q8bert_run_text,
 * in length-sorted batches, as a C user would encode a corpus.
 *
 *   bench_corpus_c MODEL TEXTS THREADS BATCH WARMUP_PASSES TIMED_PASSES [OUT.f32]
 *
 * TEXTS has one UTF-8 text per line. One pass = sort the texts by length (bytes, longest first,
 * ties in input order: sentence-transformers' order), then one q8bert_run_text call per BATCH
 * texts (the library tokenizes), each embedding copied to its input position. Prints
 * "pass_s <seconds>" per timed pass (wall clock, CLOCK_MONOTONIC) and, with OUT.f32, writes the
 * last pass's embeddings there (float32, input order, row-major).
 * The model is opened with Q8BERT_FLAG_TRUNCATE (longest-first truncation at its token limit),
 * as bench_corpus.py opens it in Python. Loading the model is not timed.
 *
 * Build: cc -O2 -std=c11 -Iinclude scripts/bench_corpus_c.c target/release/libq8bert.a \
 *          -lpthread -ldl -lm -o bench_corpus_c
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "q8bert.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

typedef struct {
    size_t len;
    size_t index;
} entry;

static int by_length_desc(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? 1 : -1;
    return (x->index > y->index) - (x->index < y->index);
}

static int fail(const char *what) {
    fprintf(stderr, "bench_corpus_c: %s: %s\n", what, q8bert_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 7 && argc != 8) {
        fprintf(stderr, "usage: bench_corpus_c MODEL TEXTS THREADS BATCH WARMUP_PASSES TIMED_PASSES [OUT.f32]\n");
        return 2;
    }
    const size_t batch = (size_t)atol(argv[4]);
    const int warmup = atoi(argv[5]), timed = atoi(argv[6]);
    if (batch == 0 || warmup < 0 || timed < 1) {
        fprintf(stderr, "bench_corpus_c: BATCH and TIMED_PASSES must be >= 1\n");
        return 2;
    }

    FILE *f = fopen(argv[2], "r");
    if (f == NULL) {
        perror(argv[2]);
        return 1;
    }
    size_t n = 0, cap = 1024;
    char **texts = malloc(cap * sizeof *texts);
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t got;
    while (texts != NULL && (got = getline(&line, &line_cap, f)) >= 0) {
        if (got > 0 && line[got - 1] == '\n') line[--got] = '\0';
        if (n == cap) {
            char **grown = realloc(texts, (cap *= 2) * sizeof *texts);
            if (grown == NULL) break;
            texts = grown;
        }
        texts[n++] = strdup(line);
    }
    free(line);
    fclose(f);
    if (texts == NULL || n == 0) {
        fprintf(stderr, "bench_corpus_c: no texts in %s\n", argv[2]);
        return 1;
    }

    q8bert_options opts;
    q8bert_options_init(&opts);
    opts.num_threads = (uint32_t)atoi(argv[3]);
    opts.flags |= Q8BERT_FLAG_TRUNCATE;
    q8bert_model *model = NULL;
    if (q8bert_create(argv[1], &opts, &model) != Q8BERT_STATUS_OK) return fail("q8bert_create");

    size_t one = 0, batch_len = 0;
    if (q8bert_text_output_len(model, 1, &one) != Q8BERT_STATUS_OK ||
        q8bert_text_output_len(model, batch, &batch_len) != Q8BERT_STATUS_OK)
        return fail("q8bert_text_output_len");
    float *batch_out = malloc(batch_len * sizeof *batch_out);
    float *out = malloc(n * one * sizeof *out);
    entry *order = malloc(n * sizeof *order);
    const char **batch_texts = malloc(batch * sizeof *batch_texts);
    if (batch_out == NULL || out == NULL || order == NULL || batch_texts == NULL) {
        fprintf(stderr, "bench_corpus_c: out of memory\n");
        return 1;
    }

    for (int pass = 0; pass < warmup + timed; pass++) {
        const double t0 = now();
        for (size_t i = 0; i < n; i++) {
            order[i].len = strlen(texts[i]);
            order[i].index = i;
        }
        qsort(order, n, sizeof *order, by_length_desc);
        for (size_t start = 0; start < n; start += batch) {
            const size_t k = n - start < batch ? n - start : batch;
            for (size_t j = 0; j < k; j++) batch_texts[j] = texts[order[start + j].index];
            if (q8bert_run_text(model, batch_texts, NULL, k, batch_out, k * one) != Q8BERT_STATUS_OK)
                return fail("q8bert_run_text");
            for (size_t j = 0; j < k; j++)
                memcpy(out + order[start + j].index * one, batch_out + j * one, one * sizeof *out);
        }
        const double seconds = now() - t0;
        if (pass >= warmup) printf("pass_s %.6f\n", seconds);
        fflush(stdout);
    }

    if (argc == 8) {
        FILE *o = fopen(argv[7], "wb");
        if (o == NULL || fwrite(out, sizeof *out, n * one, o) != n * one || fclose(o) != 0) {
            perror(argv[7]);
            return 1;
        }
    }
    printf("texts %zu dim %zu\n", n, one);
    free(batch_texts);
    free(order);
    free(out);
    free(batch_out);
    for (size_t i = 0; i < n; i++) free(texts[i]);
    free(texts);
    q8bert_free(model);
    return 0;
}
