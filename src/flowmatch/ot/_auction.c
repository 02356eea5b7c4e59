/* flowmatch's compiled kernel: the epsilon-scaling auction for the linear assignment problem and
   the squared distances of low-dimensional batches. Compiled on first use and loaded with ctypes
   by flowmatch/ot/native.py, whose docstring describes the algorithm and its certificate. */
#include <stdint.h>
#include <math.h>
#include <float.h>
#if defined(__AVX2__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

#ifndef FM_K
#define FM_K 3  /* columns each row keeps between full scans (the loader passes -DFM_K) */
#endif

static inline void fm_insert(double w, int64_t j, double *bv, int64_t *bj)
{
    int k = FM_K;
    while (k > 0 && w < bv[k - 1]) { bv[k] = bv[k - 1]; bj[k] = bj[k - 1]; k--; }
    bv[k] = w; bj[k] = j;
}

static inline int fm_unlisted(const int64_t *listed, int64_t j)
{
    for (int k = 0; k < FM_K; k++) if (listed[k] == j) return 0;
    return 1;
}

/* The FM_K best columns of a row (values row[j] + price[j]) and the (FM_K+1)-th best value.
   The scan starts from the current values of the row's listed columns (cand; -1: none), usually
   still near the top, then goes over blocks of 8 columns, compared lane by lane with the running
   (FM_K+1)-th best; only the lanes below it are offered for insertion. The AVX2, SSE2 and portable
   loops do the same sums and comparisons (no FMA: -ffp-contract=off) and find the same columns. */
static void fm_full_scan(int64_t n, const double *row, const double *price, int64_t *cand, double *thr)
{
    double bv[FM_K + 1]; int64_t bj[FM_K + 1], seed[FM_K];
    for (int k = 0; k <= FM_K; k++) { bv[k] = INFINITY; bj[k] = -1; }
    for (int k = 0; k < FM_K; k++) {
        seed[k] = cand[k];
        if (cand[k] >= 0) fm_insert(row[cand[k]] + price[cand[k]], cand[k], bv, bj);
    }
#define FM_OFFER(w, jj) do { if ((w) < bv[FM_K] && fm_unlisted(seed, (jj))) fm_insert((w), (jj), bv, bj); } while (0)
    /* the lanes of a block below the threshold (mask bit q: column j + q), lowest first */
#define FM_OFFER_MASKED(w, mask, j) do { unsigned m_ = (mask); while (m_) { int q_ = __builtin_ctz(m_); \
        m_ &= m_ - 1; FM_OFFER((w)[q_], (j) + q_); } } while (0)
    int64_t j = 0;
#if defined(__AVX2__)
    for (; j + 8 <= n; j += 8) {
        __m256d a0 = _mm256_add_pd(_mm256_loadu_pd(row + j), _mm256_loadu_pd(price + j));
        __m256d a1 = _mm256_add_pd(_mm256_loadu_pd(row + j + 4), _mm256_loadu_pd(price + j + 4));
        __m256d t = _mm256_set1_pd(bv[FM_K]);
        unsigned mask = (unsigned)_mm256_movemask_pd(_mm256_cmp_pd(a0, t, _CMP_LT_OQ))
                      | (unsigned)_mm256_movemask_pd(_mm256_cmp_pd(a1, t, _CMP_LT_OQ)) << 4;
        if (mask) {
            double w[8];
            _mm256_storeu_pd(w, a0); _mm256_storeu_pd(w + 4, a1);
            FM_OFFER_MASKED(w, mask, j);
        }
    }
#elif defined(__SSE2__)
    for (; j + 8 <= n; j += 8) {
        __m128d a0 = _mm_add_pd(_mm_loadu_pd(row + j), _mm_loadu_pd(price + j));
        __m128d a1 = _mm_add_pd(_mm_loadu_pd(row + j + 2), _mm_loadu_pd(price + j + 2));
        __m128d a2 = _mm_add_pd(_mm_loadu_pd(row + j + 4), _mm_loadu_pd(price + j + 4));
        __m128d a3 = _mm_add_pd(_mm_loadu_pd(row + j + 6), _mm_loadu_pd(price + j + 6));
        __m128d t = _mm_set1_pd(bv[FM_K]);
        unsigned mask = (unsigned)_mm_movemask_pd(_mm_cmplt_pd(a0, t)) | (unsigned)_mm_movemask_pd(_mm_cmplt_pd(a1, t)) << 2
                      | (unsigned)_mm_movemask_pd(_mm_cmplt_pd(a2, t)) << 4 | (unsigned)_mm_movemask_pd(_mm_cmplt_pd(a3, t)) << 6;
        if (mask) {
            double w[8];
            _mm_storeu_pd(w, a0); _mm_storeu_pd(w + 2, a1); _mm_storeu_pd(w + 4, a2); _mm_storeu_pd(w + 6, a3);
            FM_OFFER_MASKED(w, mask, j);
        }
    }
#endif
    for (; j + 8 <= n; j += 8) {
        double w[8], m = INFINITY;
        for (int q = 0; q < 8; q++) { w[q] = row[j + q] + price[j + q]; m = w[q] < m ? w[q] : m; }
        if (m < bv[FM_K]) for (int q = 0; q < 8; q++) FM_OFFER(w[q], j + q);
    }
    for (; j < n; j++) { double w = row[j] + price[j]; FM_OFFER(w, j); }
#undef FM_OFFER
#undef FM_OFFER_MASKED
    for (int k = 0; k < FM_K; k++) cand[k] = bj[k];
    *thr = bv[FM_K];
}

/* Best column of a row and the best and second-best values, from the candidate list when the
   list provably still holds them (prices only rise), else after a full scan. */
static int64_t fm_best_two(int64_t n, const double *row, const double *price, int64_t *cand,
                           double *thr, double *w1o, double *w2o, int64_t *scans)
{
    for (int attempt = 0; ; attempt++) {
        double w1 = INFINITY, w2 = INFINITY; int64_t j1 = -1;
        for (int k = 0; k < FM_K; k++) {
            int64_t j = cand[k];
            if (j < 0) continue;
            double w = row[j] + price[j];
            if (w < w1) { w2 = w1; w1 = w; j1 = j; } else if (w < w2) { w2 = w; }
        }
        if (attempt > 0 || w2 <= *thr) {
            if (*thr < w2) w2 = *thr;
            *w1o = w1; *w2o = w2;
            return j1;
        }
        fm_full_scan(n, row, price, cand, thr);
        (*scans)++;
    }
}

/* Min-cost assignment of an n x n row-major cost matrix (n >= 2, finite entries). Epsilon starts at
   eps0_rel * scale and is divided by factor each phase; the stop is a certified gap (an upper
   bound on primal - optimum that includes the rounding of its own sums, see _native.py) of at most
   rtol max(|optimum| lower bound, n DBL_EPSILON max |C_ij|). Row i's column is iwork[i] on return.
   out: [primal, certified gap, eps of the last phase, bids, full scans, phases, scale].
   Returns 0 when the gap is certified, 1 when max_bids was reached, 2 when the certificate cannot
   be reached in float64 (eps at the resolution of the prices, or prices so large against the
   optimum that the rounding of the dual alone exceeds the bound): the caller finishes exactly. */

/* The tolerance the certificate must meet: rtol max(m, floor), m a lower bound on |optimum| from
   optimum in [primal - e_p - gap, primal + e_p] (e_p: the rounding of the primal sum). */
static double fm_bound(double primal, double e_p, double gap, double rtol, double floor_)
{
    double lo = primal - e_p - gap, hi = primal + e_p;
    double mag = lo > 0.0 ? lo : (hi < 0.0 ? -hi : 0.0);
    return rtol * (mag > floor_ ? mag : floor_);
}

int fm_auction(int64_t n, const double *C, double eps0_rel, double factor, double rtol, int64_t max_bids,
               int64_t *iwork, double *fwork, double *out)
{
    /* work arrays: iwork (3 + FM_K) n int64, fwork 2 n doubles */
    int64_t *assign = iwork, *owner = iwork + n, *queue = iwork + 2 * n, *cand = iwork + 3 * n;
    double *price = fwork, *thr = fwork + n;
    int64_t bids = 0, scans = 0, phases = 0;
    int status = 0;
    double primal = 0.0, gap = INFINITY, cmax = 0.0, spread = 0.0, rsum = 0.0, rabs = 0.0;
    const double u = DBL_EPSILON, g = 1.0 + (double)(n + 2) * DBL_EPSILON;
    /* scale: the mean spread of the rows, mean_i (mean_j C_ij - min_j C_ij) (else max |C_ij|, or 1);
       rsum: sum_i min_j C_ij, the dual (u = row minima, v = 0) */
    for (int64_t i = 0; i < n; i++) {
        const double *row = C + i * n;
        double sum = 0.0, lo = INFINITY;
        for (int64_t j = 0; j < n; j++) {
            double c = row[j], a = fabs(c);
            sum += c; lo = c < lo ? c : lo; cmax = a > cmax ? a : cmax;
        }
        spread += sum / (double)n - lo;
        rsum += lo; rabs += fabs(lo);
    }
    spread /= (double)n;
    double scale = spread > 0.0 ? spread : (cmax > 1.0 ? cmax : 1.0);
    double eps = eps0_rel * scale, eps_final = rtol * scale / (double)n;
    double floor_ = (double)n * u * cmax;  /* the float64 resolution of a sum of n costs */
    /* start prices p_j = -min_i C_ij (the column reduction of Hungarian-type solvers): a column
       far from every row starts cheap, which spares the first phases much of their price war
       (measured 20-35% fewer ms on N(0, I) -> 8gaussians, n = 256..1024) */
    for (int64_t j = 0; j < n; j++) { owner[j] = -1; price[j] = INFINITY; }
    for (int64_t i = 0; i < n; i++) {
        const double *row = C + i * n;
        for (int64_t j = 0; j < n; j++) if (row[j] < price[j]) price[j] = row[j];
    }
    for (int64_t j = 0; j < n; j++) price[j] = -price[j];
    for (int64_t k = 0; k < n * FM_K; k++) cand[k] = -1;
    for (int64_t i = 0; i < n; i++) { assign[i] = -1; fm_full_scan(n, C + i * n, price, cand + i * FM_K, thr + i); }
    for (;;) {
        phases++;
        /* keep the rows that satisfy eps-complementary slackness, queue the others */
        int64_t qn = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t a = assign[i];
            if (a >= 0) {
                const double *row = C + i * n;
                double w1, w2;
                fm_best_two(n, row, price, cand + i * FM_K, thr + i, &w1, &w2, &scans);
                if (row[a] + price[a] <= w1 + eps) continue;
                owner[a] = -1; assign[i] = -1;
            }
            queue[qn++] = i;
        }
        int64_t qh = 0, qt = qn % n;
        while (qn > 0) {
            if (bids >= max_bids) { status = 1; break; }
            int64_t i = queue[qh]; qh = (qh + 1) % n; qn--;
            const double *row = C + i * n;
            double w1, w2;
            int64_t j1 = fm_best_two(n, row, price, cand + i * FM_K, thr + i, &w1, &w2, &scans);
            bids++;
            price[j1] += (w2 - w1) + eps;
            int64_t prev = owner[j1];
            owner[j1] = i; assign[i] = j1;
            if (prev >= 0) { assign[prev] = -1; queue[qt] = prev; qt = (qt + 1) % n; qn++; }
        }
        if (status) break;
        /* O(n) after every phase: the row-minimum bound gap_r = primal - sum_i min_j C_ij, and
           whether the dual bound is out of reach: at the end of a phase w_is(i) <= m_i + eps
           (eps-complementary slackness) and the m_i = min_j (C_ij + p_j) >= 0 only rise, so its
           rounding term 2u sum_i m_i can never fall below 2u (sum_i w_is(i) - n eps) */
        double cabs = 0.0, wsum = 0.0;
        primal = 0.0;
        for (int64_t i = 0; i < n; i++) {
            int64_t a = assign[i];
            double c = C[i * n + a];
            primal += c; cabs += fabs(c); wsum += c + price[a];
        }
        double e_p = (double)(n + 1) * u * cabs;
        double gap_r = g * (primal - rsum) + 2.0 * (double)(n + 1) * u * (cabs + rabs);
        if (gap_r < 0.0) gap_r = 0.0;
        if (gap_r <= fm_bound(primal, e_p, gap_r, rtol, floor_)) { gap = gap_r; break; }
        double omax = fabs(primal) > fabs(rsum) ? fabs(primal) : fabs(rsum);  /* |optimum| <= omax + e */
        omax += e_p + 2.0 * (double)(n + 1) * u * rabs;
        if (2.0 * u * (wsum - (double)n * eps) > rtol * (omax > floor_ ? omax : floor_)) { status = 2; break; }
        if (eps <= eps_final) {
            /* certificate (_native.py's docstring): with m_i = min_j (C_ij + p_j) the
               dual (u_i = m_i, v_j = -p_j) is feasible, and since s is a permutation
               primal - dual = sum_i (w_is(i) - m_i), a sum of terms >= 0 (w_ij = C_ij + p_j);
               g and 2u sum_i (w_is(i) + m_i) bound the rounding of the w, the m and the sums */
            double pmax = 0.0, gap_d = 0.0, mag_d = 0.0;
            for (int64_t j = 0; j < n; j++) if (fabs(price[j]) > pmax) pmax = fabs(price[j]);
            for (int64_t i = 0; i < n; i++) {
                const double *row = C + i * n;
                double m = INFINITY;
                for (int64_t j = 0; j < n; j++) { double w = row[j] + price[j]; if (w < m) m = w; }
                double wa = row[assign[i]] + price[assign[i]];
                gap_d += wa - m; mag_d += fabs(wa) + fabs(m);
            }
            gap_d = g * (gap_d + 2.0 * u * mag_d);
            gap = gap_d < gap_r ? gap_d : gap_r;
            if (gap <= fm_bound(primal, e_p, gap, rtol, floor_)) break;
            if (eps <= 16.0 * DBL_EPSILON * (cmax + pmax)) { status = 2; break; }
            eps_final = eps / factor;
        }
        eps = eps / factor;
        if (eps < eps_final) eps = eps_final;
    }
    out[0] = primal; out[1] = gap; out[2] = eps; out[3] = (double)bids; out[4] = (double)scans;
    out[5] = (double)phases; out[6] = scale;
    return status;
}

/* fm_auction on nb matrices of n x n stored one after another (the blocks of a block coupling) in
   one call: perms[b n + i] is row i's column in block b, out[7 b ...] and status[b] its results.
   Returns the number of blocks whose status is not 0. */
int64_t fm_auction_many(int64_t nb, int64_t n, const double *C, double eps0_rel, double factor, double rtol,
                        int64_t max_bids, int64_t *iwork, double *fwork, double *out, int64_t *status,
                        int64_t *perms)
{
    int64_t failed = 0;
    for (int64_t b = 0; b < nb; b++) {
        status[b] = fm_auction(n, C + b * n * n, eps0_rel, factor, rtol, max_bids, iwork, fwork, out + 7 * b);
        failed += status[b] != 0;
        for (int64_t i = 0; i < n; i++) perms[b * n + i] = iwork[i];
    }
    return failed;
}

/* out[i, j] = sum_k (x[i, k] - y[j, k])^2 for row-major x (n, d), y (m, d): the differences
   themselves, without the cancellation of |x|^2 + |y|^2 - 2 x.y (for small d, where it is also
   faster than a matrix product). */
void fm_sqdist(int64_t n, int64_t m, int64_t d, const double *x, const double *y, double *out)
{
    for (int64_t i = 0; i < n; i++) {
        const double *a = x + i * d;
        double *o = out + i * m;
        if (d == 2) {
            for (int64_t j = 0; j < m; j++) { double u = a[0] - y[2 * j], v = a[1] - y[2 * j + 1]; o[j] = u * u + v * v; }
        } else {
            for (int64_t j = 0; j < m; j++) {
                const double *b = y + j * d;
                double s = 0.0;
                for (int64_t k = 0; k < d; k++) { double t = a[k] - b[k]; s += t * t; }
                o[j] = s;
            }
        }
    }
}

/* Whether this CPU runs AVX2 code (the loader then builds and loads the -mavx2 variant). */
int fm_cpu_avx2(void)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}
