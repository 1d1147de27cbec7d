/* The fast path's native kernels on time-major features (batch, frames, channels).
 *
 * Compiled on first use by tdanet.model.native (plain C, no torch headers) and called
 * through ctypes. Each replaces a chain of small torch operations whose per-call cost
 * dominates short inputs: a depthwise convolution with its gLN's moments and map, a gLN
 * applied in place (with a one-parameter PReLU), the gLN of a per-channel map from moments,
 * and the LA product with nearest upsampling.
 * Moments: float partial sums per channel, flushed into float64 every ROWS frames.
 */
#include <math.h>
#include <stdint.h>
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

/* Adds frame o (C) to the float partials p (2, C); every ROWS frames (count f + 1) and at
 * the last frame, moves them into s (2, C) float64. */
static void accumulate(const float *restrict o, long C, long f, long F, float *restrict p,
                       double *restrict s) {
    float *restrict p2 = p + C;
    for (long c = 0; c < C; c++) {
        p[c] += o[c];
        p2[c] += o[c] * o[c];
    }
    if ((f + 1) % ROWS == 0 || f + 1 == F) {
        for (long c = 0; c < C; c++) {
            s[c] += p[c];
            s[C + c] += p2[c];
            p[c] = p2[c] = 0.0f;
        }
    }
}

/* Zeroes the float partials p (2, C) and the float64 moments s (2, C), then adds the T
 * frames of x (T, C) into s. */
static void item_moments(const float *restrict x, long T, long C, float *restrict p,
                         double *restrict s) {
    for (long c = 0; c < 2 * C; c++) {
        s[c] = 0.0;
        p[c] = 0.0f;
    }
    for (long t = 0; t < T; t++) accumulate(x + t * C, C, t, T, p, s);
}

/* The gLN (gamma, beta (C), eps) of one item's per-channel map y = g * x + o, g = w * a,
 * o = w * b (w NULL meaning 1, a NULL meaning 1, b NULL meaning 0), from x's per-channel
 * sums x1 and squares x2 (C, float64) over length frames: gLN(y) = x * scale + shift. */
static void gln_of_moments(const double *restrict x1, const double *restrict x2, long C,
                           long length, const float *restrict w, const float *restrict a,
                           const float *restrict b, const float *restrict gamma,
                           const float *restrict beta, double eps, float *restrict scale,
                           float *restrict shift) {
    double n = (double)length, total = 0.0, squares = 0.0;
    for (long c = 0; c < C; c++) {
        float wc = w ? w[c] : 1.0f;
        double g = a ? wc * a[c] : wc, o = b ? wc * b[c] : 0.0f;
        total += g * x1[c] + o * n;
        squares += g * g * x2[c] + 2.0 * o * g * x1[c] + o * o * n;
    }
    double mean = total / (n * C), var = squares / (n * C) - mean * mean;
    float inv_std = (float)(1.0 / sqrt((var > 0.0 ? var : 0.0) + eps)), mf = (float)mean;
    for (long c = 0; c < C; c++) {
        float wc = w ? w[c] : 1.0f;
        float g = a ? wc * a[c] : wc, o = b ? wc * b[c] : 0.0f;
        float unit = gamma[c] * inv_std;
        shift[c] = beta[c] - mf * unit + o * unit;
        scale[c] = unit * g;
    }
}

/* x (B, T, C), w (K, C) tap-major, bias (C) or NULL -> out (B, F, C) with
 * F = (T + 2 pad - K) / stride + 1: out[f] = bias + sum_k w[k] * x[f * stride - pad + k]
 * (zero outside x). With sums (B, 2, C) float64, also each item's per-channel sum and sum
 * of squares of out over its F frames. With gamma, beta (C) and affine (2, B, C), also the
 * gLN map of each item's out: scale in affine[0], shift in affine[1]. Returns 0, or -1
 * when out of memory (nothing useful written then). */
int tdanet_depthwise(const float *restrict x, long B, long T, long C,
                     const float *restrict w, long K, const float *restrict bias,
                     long stride, long pad, float *restrict out, long F,
                     double *restrict sums, const float *restrict gamma,
                     const float *restrict beta, double eps, float *restrict affine) {
    int moments = sums || affine;
    float *partial = moments ? malloc(2 * C * sizeof(float)) : NULL;
    double *own = moments && !sums ? malloc(2 * C * sizeof(double)) : NULL;
    if (moments && (!partial || (!sums && !own))) {
        free(partial);
        free(own);
        return -1;
    }
    for (long b = 0; b < B; b++) {
        const float *xb = x + b * T * C;
        float *ob = out + b * F * C;
        double *s = sums ? sums + b * 2 * C : own;
        if (moments) {
            for (long c = 0; c < 2 * C; c++) {
                s[c] = 0.0;
                partial[c] = 0.0f;
            }
        }
        for (long f = 0; f < F; f++) {
            float *restrict o = ob + f * C;
            long start = f * stride - pad;
            if (start < 0 || start + K > T)
                edge_frame(xb, T, C, w, K, bias, start, o);
            else
                inner_frame(xb + start * C, C, w, K, bias, o);
            if (moments) accumulate(o, C, f, F, partial, s);
        }
        if (affine)
            gln_of_moments(s, s + C, C, F, NULL, NULL, NULL, gamma, beta, eps, affine + b * C,
                           affine + (B + b) * C);
    }
    free(partial);
    free(own);
    return 0;
}

/* y (B, T, C) in place: y = gLN(y) (gamma, beta (C), eps), then, when act is nonzero, a
 * one-parameter PReLU: y < 0 becomes slope * y. Returns 0, or -1 when out of memory (y
 * unchanged then). */
int tdanet_gln(float *restrict y, long B, long T, long C, const float *restrict gamma,
               const float *restrict beta, double eps, int act, float slope) {
    float *partial = malloc(2 * C * sizeof(float)), *map = malloc(2 * C * sizeof(float));
    double *s = malloc(2 * C * sizeof(double));
    if (!partial || !map || !s) {
        free(partial);
        free(map);
        free(s);
        return -1;
    }
    for (long b = 0; b < B; b++) {
        float *yb = y + b * T * C;
        item_moments(yb, T, C, partial, s);
        gln_of_moments(s, s + C, C, T, NULL, NULL, NULL, gamma, beta, eps, map, map + C);
        const float *restrict scale = map, *restrict shift = map + C;
        float negative = act ? slope : 1.0f;
        for (long t = 0; t < T; t++) {
            float *restrict row = yb + t * C;
            for (long c = 0; c < C; c++) {
                float v = row[c] * scale[c] + shift[c];
                row[c] = v < 0.0f ? negative * v : v;
            }
        }
    }
    free(partial);
    free(map);
    free(s);
    return 0;
}

/* The LA product in place: d (B, T, C) = (d * scale + offset) * up(gate) + up(shift), with
 * scale, offset (B, C), gate, shift (B, Tg, C) and up the nearest resize given by index (T)
 * (int64: row t reads guide row index[t]; NULL when Tg == T). Computed as
 * d * (scale * gate) + (offset * gate + shift), the guides' products formed per row. */
void tdanet_la_product(float *restrict d, long B, long T, long C, const float *restrict scale,
                       const float *restrict offset, const float *restrict gate,
                       const float *restrict shift, long Tg, const int64_t *restrict index) {
    for (long b = 0; b < B; b++) {
        const float *sc = scale + b * C, *of = offset + b * C;
        for (long t = 0; t < T; t++) {
            long g = index ? (long)index[t] : t;
            const float *restrict gr = gate + (b * Tg + g) * C;
            const float *restrict sr = shift + (b * Tg + g) * C;
            float *restrict row = d + (b * T + t) * C;
            for (long c = 0; c < C; c++) {
                float mul = sc[c] * gr[c], add = of[c] * gr[c] + sr[c];
                row[c] = row[c] * mul + add;
            }
        }
    }
}

/* Each item's per-channel sum and sum of squares of x (B, T, C) over time -> sums (B, 2, C)
 * float64. Returns 0, or -1 when out of memory. */
int tdanet_moments(const float *restrict x, long B, long T, long C, double *restrict sums) {
    float *partial = malloc(2 * C * sizeof(float));
    if (!partial) return -1;
    for (long b = 0; b < B; b++) item_moments(x + b * T * C, T, C, partial, sums + b * 2 * C);
    free(partial);
    return 0;
}

/* M gLNs (gamma, beta (M, C), eps) of per-channel maps of x: y = g * x + o with g = w * a,
 * o = w * b (w (M, C); a, b (B, C), a NULL meaning 1, b NULL meaning 0), from x's moments
 * over length frames (item i's per-channel sums at s1 + i * stride, squares at s2 + i *
 * stride, float64) -> affine (2, M, B, C) with gLN_m(y) = x * affine[0, m] + affine[1, m]. */
void tdanet_gln_of_map(const double *restrict s1, const double *restrict s2, long stride,
                       long B, long C, long length, long M, const float *restrict w,
                       const float *restrict a, const float *restrict b,
                       const float *restrict gamma, const float *restrict beta, double eps,
                       float *restrict affine) {
    for (long m = 0; m < M; m++) {
        for (long i = 0; i < B; i++) {
            gln_of_moments(s1 + i * stride, s2 + i * stride, C, length, w + m * C,
                           a ? a + i * C : NULL, b ? b + i * C : NULL, gamma + m * C,
                           beta + m * C, eps, affine + (m * B + i) * C,
                           affine + ((M + m) * B + i) * C);
        }
    }
}
