/* Error paths of the C API: NULL pointers, missing and corrupt files, bad options, wrong sizes,
 * and the last-error message. Usage: test_errors VALID_MODEL.q8b CORRUPT_FILE
 * Prints one line per check and a closing "N passed, N failed" line; exit 1 on any failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "q8bert.h"

static int passed, failed;

#define CHECK(cond, name)                                                         \
    do {                                                                          \
        if (cond) {                                                               \
            passed++;                                                             \
            printf("ok   %s\n", name);                                            \
        } else {                                                                  \
            failed++;                                                             \
            printf("FAIL %s (last error: %s)\n", name, q8bert_last_error());     \
        }                                                                         \
    } while (0)

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s VALID_MODEL.q8b CORRUPT_FILE\n", argv[0]);
        return 2;
    }
    q8bert_model *model = NULL;
    q8bert_options opts;

    CHECK(q8bert_create(NULL, NULL, &model) == Q8BERT_STATUS_NULL_ARGUMENT, "create: NULL path");
    CHECK(model == NULL, "create: output untouched on failure");
    CHECK(strstr(q8bert_last_error(), "NULL") != NULL, "last_error names the NULL argument");
    CHECK(q8bert_create(argv[1], NULL, NULL) == Q8BERT_STATUS_NULL_ARGUMENT, "create: NULL model_out");
    CHECK(q8bert_create("/nonexistent/model.q8b", NULL, &model) == Q8BERT_STATUS_IO, "create: missing file");
    CHECK(strstr(q8bert_last_error(), "/nonexistent/model.q8b") != NULL, "last_error names the file");
    CHECK(q8bert_create(argv[2], NULL, &model) != Q8BERT_STATUS_OK && model == NULL, "create: corrupt file rejected");
    CHECK(strlen(q8bert_last_error()) > 0, "corrupt file has a detail message");

    q8bert_options_init(&opts);
    opts.flags = 0x80;
    CHECK(q8bert_create(argv[1], &opts, &model) == Q8BERT_STATUS_UNSUPPORTED_OPTIONS, "create: unknown flag");
    q8bert_options_init(&opts);
    opts.struct_size = 4;
    CHECK(q8bert_create(argv[1], &opts, &model) == Q8BERT_STATUS_UNSUPPORTED_OPTIONS, "create: bad struct_size");
    q8bert_options_init(&opts);
    opts.kernel = 77;
    CHECK(q8bert_create(argv[1], &opts, &model) == Q8BERT_STATUS_UNSUPPORTED_OPTIONS, "create: unknown kernel");
    q8bert_options_init(&opts);
    opts.num_threads = 4000000000u;
    CHECK(q8bert_create(argv[1], &opts, &model) == Q8BERT_STATUS_INVALID_ARGUMENT && model == NULL, "create: absurd thread count");
    CHECK(q8bert_create_from_memory(NULL, 10, NULL, &model) == Q8BERT_STATUS_NULL_ARGUMENT, "create_from_memory: NULL data");
    static const uint32_t tiny[4] = {0};
    CHECK(q8bert_create_from_memory((const uint8_t *)tiny, sizeof tiny, NULL, &model) == Q8BERT_STATUS_FILE_TOO_SHORT,
          "create_from_memory: short buffer");

    q8bert_options_init(&opts);
    opts.flags = Q8BERT_FLAG_HUGE_PAGES | Q8BERT_FLAG_VERIFY_CHECKSUM;
    CHECK(q8bert_create(argv[1], &opts, &model) == Q8BERT_STATUS_OK && model != NULL, "create: a private copy (huge pages)");
    q8bert_free(model);
    model = NULL;
    CHECK(q8bert_create(argv[2], &opts, &model) != Q8BERT_STATUS_OK && model == NULL, "create: corrupt file rejected from its copy too");

    q8bert_options_init(&opts);
    opts.kernel = Q8BERT_KERNEL_SCALAR;
    opts.flags = Q8BERT_FLAG_VERIFY_CHECKSUM;
    CHECK(q8bert_create(argv[1], &opts, &model) == Q8BERT_STATUS_OK && model != NULL, "create: valid model");
    if (model == NULL) {
        printf("%d passed, %d failed\n", passed, failed + 1);
        return 1;
    }

    q8bert_info info;
    CHECK(q8bert_model_info(model, NULL) == Q8BERT_STATUS_NULL_ARGUMENT, "model_info: NULL info");
    CHECK(q8bert_model_info(NULL, &info) == Q8BERT_STATUS_NULL_ARGUMENT, "model_info: NULL model");
    CHECK(q8bert_model_info(model, &info) == Q8BERT_STATUS_OK && info.kernel == Q8BERT_KERNEL_SCALAR,
          "model_info: reports the forced scalar kernel");

    int32_t ids[4] = {2, 7, 8, 3};
    float out[64];
    size_t need = 0;
    CHECK(q8bert_output_len(model, 1, 4, &need) == Q8BERT_STATUS_OK && need == info.output_dim, "output_len");
    CHECK(q8bert_run(NULL, ids, NULL, NULL, 1, 4, out, 64) == Q8BERT_STATUS_NULL_ARGUMENT, "run: NULL model");
    CHECK(q8bert_run(model, NULL, NULL, NULL, 1, 4, out, 64) == Q8BERT_STATUS_NULL_ARGUMENT, "run: NULL ids");
    CHECK(q8bert_run(model, ids, NULL, NULL, 1, 4, NULL, 64) == Q8BERT_STATUS_NULL_ARGUMENT, "run: NULL output");
    CHECK(q8bert_run(model, ids, NULL, NULL, 1, 4, out, need - 1) == Q8BERT_STATUS_BUFFER_TOO_SMALL, "run: output too small");
    CHECK(strstr(q8bert_last_error(), "are needed") != NULL, "last_error gives the output size needed");
    size_t work = 0;
    CHECK(q8bert_working_memory(model, 2, 4, &work) == Q8BERT_STATUS_OK && work > 0, "working_memory");
    CHECK(q8bert_working_memory(model, 2, 4, NULL) == Q8BERT_STATUS_NULL_ARGUMENT, "working_memory: NULL out");
    CHECK(q8bert_working_memory(model, 1, info.max_seq_len + 1, &work) == Q8BERT_STATUS_SEQUENCE_TOO_LONG,
          "working_memory: sequence too long");
    CHECK(q8bert_working_memory(model, (size_t)-1, 4, &work) == Q8BERT_STATUS_INVALID_ARGUMENT, "working_memory: absurd batch");
    CHECK(q8bert_run(model, ids, NULL, NULL, 0, 4, out, 64) == Q8BERT_STATUS_INVALID_ARGUMENT, "run: zero batch");
    CHECK(q8bert_run(model, ids, NULL, NULL, (size_t)-1, 4, out, 64) == Q8BERT_STATUS_INVALID_ARGUMENT, "run: overflowing batch");
    int32_t bad_ids[4] = {2, 100000, 8, 3};
    CHECK(q8bert_run(model, bad_ids, NULL, NULL, 1, 4, out, 64) == Q8BERT_STATUS_TOKEN_OUT_OF_RANGE, "run: id out of range");
    CHECK(strstr(q8bert_last_error(), "100000") != NULL, "last_error names the bad id");
    int32_t bad_mask[4] = {1, 1, 5, 1};
    CHECK(q8bert_run(model, ids, NULL, bad_mask, 1, 4, out, 64) == Q8BERT_STATUS_INVALID_ARGUMENT, "run: mask not 0/1");
    int32_t *long_ids = calloc(info.max_seq_len + 1, sizeof *long_ids);
    float *long_out = calloc((size_t)(info.max_seq_len + 1) * info.hidden_size, sizeof *long_out);
    CHECK(q8bert_run(model, long_ids, NULL, NULL, 1, info.max_seq_len + 1, long_out,
                     (size_t)(info.max_seq_len + 1) * info.hidden_size) == Q8BERT_STATUS_SEQUENCE_TOO_LONG,
          "run: sequence too long");
    free(long_ids);
    free(long_out);
    CHECK(q8bert_run(model, ids, NULL, NULL, 1, 4, out, 64) == Q8BERT_STATUS_OK, "run: works after errors");

    CHECK(q8bert_label_name(model, 100) == NULL, "label_name: out of range is NULL");
    CHECK(q8bert_label_name(NULL, 0) == NULL, "label_name: NULL model is NULL");
    CHECK(strcmp(q8bert_status_string(Q8BERT_STATUS_BAD_MAGIC), "not a q8bert model file (bad magic)") == 0,
          "status_string is static text");
    CHECK(q8bert_status_string((q8bert_status)12345) != NULL, "status_string of an unknown code is not NULL");
    CHECK(strcmp(q8bert_kernel_name(Q8BERT_KERNEL_SCALAR), "scalar") == 0, "kernel_name");

    q8bert_free(model);
    q8bert_free(NULL);
    CHECK(1, "free(NULL) is a no-op");

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
