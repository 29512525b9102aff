/* The other side of the instruction-count comparison in docs/EMBEDDED.md: CMSIS-NN's s8
 * fully-connected kernel (the one under TensorFlow Lite Micro) on q8bert's GEMM shape, built by
 * firmware/build.rs from a CMSIS-NN checkout when Q8BERT_CMSIS_NN points at one
 * (scripts/bench_cmsis_nn.sh). Symmetric int8 like q8bert: zero offsets, per-tensor requantize. */
#include <stdint.h>
#include "arm_nnfunctions.h"

static int32_t kernel_sums[4096];
static int32_t bias[4096];

/* Per-model preparation (Helium builds add input_offset * row sums from this buffer; q8bert's
 * weight sums are precomputed the same way, so neither is counted). */
int32_t q8bert_cmsis_nn_prepare(const int8_t *weights, int32_t k, int32_t n)
{
    if (n > 4096)
        return -1;
    return arm_vector_sum_s8(kernel_sums, k, n, weights, 0, 0, bias);
}

/* output[m][n] = requantize(input[m][k] . weights[n][k]); returns the CMSIS-NN status. */
int32_t q8bert_cmsis_nn_fc(const int8_t *input, const int8_t *weights, int8_t *output, int32_t m, int32_t k, int32_t n)
{
    const cmsis_nn_context ctx = {kernel_sums, (int32_t)sizeof(kernel_sums)};
    const cmsis_nn_fc_params fc = {.input_offset = 0, .filter_offset = 0, .output_offset = 0, .activation = {-128, 127}};
    const cmsis_nn_per_tensor_quant_params quant = {.multiplier = 1 << 30, .shift = -8};
    const cmsis_nn_dims input_dims = {m, 1, 1, k}, filter_dims = {k, 1, 1, n}, bias_dims = {1, 1, 1, n}, output_dims = {m, 1, 1, n};
    return arm_fully_connected_s8(&ctx, &fc, &quant, &input_dims, input, &filter_dims, weights, &bias_dims, bias, &output_dims, output);
}
