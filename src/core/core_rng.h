/* core_rng.h: the project's seeded random stream (splitmix64) and unbiased bounded draws, shared by
 * the calibration window sampler (model/dataset.c) and AutoRound's mini-batch sampler, so both
 * draw identically on every machine and rank count. Layer: core (header only). */
#ifndef WQ_CORE_RNG_H
#define WQ_CORE_RNG_H

#include <stdint.h>

/* Next output of the splitmix64 stream whose state is *s. */
static inline uint64_t wq_rng_splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, bound) without modulo bias: draws x until x >= 2^64 mod bound, returns x % bound. */
static inline uint64_t wq_rng_uniform_below(uint64_t *s, uint64_t bound)
{
    const uint64_t reject_below = (0 - bound) % bound; /* 2^64 mod bound */
    uint64_t x;
    do {
        x = wq_rng_splitmix64(s);
    } while (x < reject_below);
    return x % bound;
}

#endif
