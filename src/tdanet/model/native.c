/* Depthwise 1-D convolution on time-major features, with the moments of its output.
 *
 * Compiled on first use by tdanet.model.native (plain C, no torch headers) and called
 * through ctypes. One pass: each output frame is computed in registers, stored, and added
 * to per-channel float partial sums that are flushed into float64 every ROWS frames, so
 * a gLN needs no second pass over the output.
 */
#include <stdlib.h>

/* Channels per register block of the inner loop. */
#define BLOCK 64
/* Frames per float32 partial sum before it joins the float64 total (as time_moments). */
#define ROWS 256

static void edge_frame(const float *restrict xb, long T, long C, const float *restrict w,
                       long K, const float *restrict bias, long start, float *restrict o) {
    for (long c = 0; c < C; c++) o[c] = bias ? bias[c] : 0.0f;
    for (long k = 0; k < K; k++) {
        long t = start + k;
        if (t < 0 || t >= T) continue;
        const float *xi = xb + t * C, *wk = w + k * C;
        for (long c = 0; c < C; c++) o[c] += xi[c] * wk[c];
    }
}

static void inner_frame(const float *restrict xs, long C, const float *restrict w, long K,
                        const float *restrict bias, float *restrict o) {
    for (long c0 = 0; c0 < C; c0 += BLOCK) {
        long n = C - c0 < BLOCK ? C - c0 : BLOCK;
        float acc[BLOCK];
        for (long c = 0; c < n; c++) acc[c] = bias ? bias[c0 + c] : 0.0f;
        for (long k = 0; k < K; k++) {
            const float *xi = xs + k * C + c0, *wk = w + k * C + c0;
            for (long c = 0; c < n; c++) acc[c] += xi[c] * wk[c];
        }
        for (long c = 0; c < n; c++) o[c0 + c] = acc[c];
    }
}

/* x (B, T, C), w (K, C) tap-major, bias (C) or NULL -> out (B, F, C) with
 * F = (T + 2 pad - K) / stride + 1: out[f] = bias + sum_k w[k] * x[f * stride - pad + k]
 * (zero outside x). With sums not NULL, also each item's per-channel sum and sum of
 * squares of out over its F frames, sums (B, 2, C) float64. Returns 0, or -1 when out of
 * memory (nothing useful written then). */
int tdanet_depthwise(const float *restrict x, long B, long T, long C,
                     const float *restrict w, long K, const float *restrict bias,
                     long stride, long pad, float *restrict out, long F,
                     double *restrict sums) {
    float *partial = NULL;
    if (sums) {
        partial = malloc(2 * C * sizeof(float));
        if (!partial) return -1;
    }
    for (long b = 0; b < B; b++) {
        const float *xb = x + b * T * C;
        float *ob = out + b * F * C;
        double *s1 = sums ? sums + b * 2 * C : NULL, *s2 = s1 ? s1 + C : NULL;
        if (sums) {
            for (long c = 0; c < C; c++) s1[c] = s2[c] = 0.0;
            for (long c = 0; c < 2 * C; c++) partial[c] = 0.0f;
        }
        for (long f = 0; f < F; f++) {
            float *restrict o = ob + f * C;
            long start = f * stride - pad;
            if (start < 0 || start + K > T)
                edge_frame(xb, T, C, w, K, bias, start, o);
            else
                inner_frame(xb + start * C, C, w, K, bias, o);
            if (!sums) continue;
            float *restrict p1 = partial, *restrict p2 = partial + C;
            for (long c = 0; c < C; c++) {
                p1[c] += o[c];
                p2[c] += o[c] * o[c];
            }
            if ((f + 1) % ROWS == 0 || f + 1 == F) {
                for (long c = 0; c < C; c++) {
                    s1[c] += p1[c];
                    s2[c] += p2[c];
                    p1[c] = p2[c] = 0.0f;
                }
            }
        }
    }
    free(partial);
    return 0;
}
