// CRC-32C (Castagnoli) for Kafka record batches (magic 2 covers bytes [21, end) of each batch with it).
//
// Two implementations share one contract (the CRC value is pre- and post-inverted, 0 starts a new CRC):
//
// - portable: slicing-by-8 over eight 256-entry tables, about 1-2 GB/s, any CPU.
// - hardware: the SSE4.2 `crc32` instruction. One instruction has a latency of 3 cycles but a throughput of one
//   per cycle, so a single dependent chain wastes two thirds of the unit. We run three independent chains over
//   three adjacent blocks and then combine them: appending `n` zero bytes to a CRC register is a linear map
//   over GF(2), precomputed as four byte-indexed tables per block size, so combining costs four look-ups.
//
// The SSE4.2 function is compiled with `__attribute__((target("sse4.2")))`, so the target needs no flags, and is
// only called after `__builtin_cpu_supports("sse4.2")` said yes.

#include "CCRC32C.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#define CCRC32C_HAVE_X86 1
#else
#define CCRC32C_HAVE_X86 0
#endif

/// The reflected Castagnoli polynomial.
#define CCRC32C_POLY 0x82F63B78u

/// Block sizes of the three-stream hardware loop: long blocks for large inputs, short ones for the tail.
#define CCRC32C_LONG 8192
#define CCRC32C_SHORT 256

/// Slicing-by-8 tables: `slice[0]` is the classic byte table, `slice[k][b]` advances `b` through k more zero bytes.
static uint32_t slice[8][256];

/// Zero-extension operators as byte tables: `shift(crc) = t[0][crc & 0xff] ^ t[1][crc >> 8 & 0xff] ^ ...`
/// gives the raw register after CCRC32C_LONG (or _SHORT) zero bytes.
static uint32_t shiftLong[4][256];
static uint32_t shiftShort[4][256];

static int hardwareAvailable;
static pthread_once_t initOnce = PTHREAD_ONCE_INIT;

/// Builds the zero-extension tables for `length` zero bytes from the images of the 32 basis vectors, each found
/// by running the byte table over `length` zeros (32 * length steps, once at start-up).
static void buildShiftTable(uint32_t table[4][256], size_t length) {
    uint32_t basis[32];
    for (int bit = 0; bit < 32; bit++) {
        uint32_t crc = 1u << bit;
        for (size_t i = 0; i < length; i++) {
            crc = slice[0][crc & 0xff] ^ (crc >> 8);
        }
        basis[bit] = crc;
    }
    for (int k = 0; k < 4; k++) {
        for (uint32_t b = 0; b < 256; b++) {
            uint32_t image = 0;
            for (int bit = 0; bit < 8; bit++) {
                if (b & (1u << bit)) {
                    image ^= basis[8 * k + bit];
                }
            }
            table[k][b] = image;
        }
    }
}

static void initialize(void) {
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t crc = b;
        for (int i = 0; i < 8; i++) {
            crc = (crc & 1) ? (crc >> 1) ^ CCRC32C_POLY : crc >> 1;
        }
        slice[0][b] = crc;
    }
    for (uint32_t b = 0; b < 256; b++) {
        for (int k = 1; k < 8; k++) {
            uint32_t previous = slice[k - 1][b];
            slice[k][b] = (previous >> 8) ^ slice[0][previous & 0xff];
        }
    }
    buildShiftTable(shiftLong, CCRC32C_LONG);
    buildShiftTable(shiftShort, CCRC32C_SHORT);
#if CCRC32C_HAVE_X86
    __builtin_cpu_init();
    hardwareAvailable = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#endif
}

static inline void ensureInitialized(void) { pthread_once(&initOnce, initialize); }

static inline uint32_t shift(const uint32_t table[4][256], uint32_t crc) {
    return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff] ^ table[2][(crc >> 16) & 0xff] ^ table[3][crc >> 24];
}

/// Little-endian loads written byte by byte: compilers fold them into one load, and big-endian CPUs stay correct.
static inline uint32_t load32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/// Raw register update (no inversion) over `length` bytes with slicing-by-8.
static uint32_t portableRaw(uint32_t crc, const unsigned char *p, size_t length) {
    while (length >= 8) {
        uint32_t low = load32(p) ^ crc;
        uint32_t high = load32(p + 4);
        crc = slice[7][low & 0xff] ^ slice[6][(low >> 8) & 0xff] ^ slice[5][(low >> 16) & 0xff]
            ^ slice[4][low >> 24] ^ slice[3][high & 0xff] ^ slice[2][(high >> 8) & 0xff]
            ^ slice[1][(high >> 16) & 0xff] ^ slice[0][high >> 24];
        p += 8;
        length -= 8;
    }
    while (length > 0) {
        crc = slice[0][(crc ^ *p) & 0xff] ^ (crc >> 8);
        p++;
        length--;
    }
    return crc;
}

uint32_t ccrc32c_extend_portable(uint32_t crc, const void *bytes, size_t length) {
    ensureInitialized();
    return ~portableRaw(~crc, (const unsigned char *)bytes, length);
}

#if CCRC32C_HAVE_X86

static inline uint64_t load64(const unsigned char *p) {
    uint64_t value;
    memcpy(&value, p, sizeof(value));
    return value;
}

/// Three chains over three adjacent blocks of `block` bytes, combined into `crc` with the matching shift table.
__attribute__((target("sse4.2"))) static inline uint64_t threeStreams(
    uint64_t crc0, const unsigned char **cursor, size_t block, const uint32_t table[4][256]
) {
    const unsigned char *p = *cursor;
    const unsigned char *end = p + block;
    uint64_t crc1 = 0;
    uint64_t crc2 = 0;
    while (p < end) {
        crc0 = _mm_crc32_u64(crc0, load64(p));
        crc1 = _mm_crc32_u64(crc1, load64(p + block));
        crc2 = _mm_crc32_u64(crc2, load64(p + 2 * block));
        p += 8;
    }
    crc0 = shift(table, (uint32_t)crc0) ^ (uint32_t)crc1;
    crc0 = shift(table, (uint32_t)crc0) ^ (uint32_t)crc2;
    *cursor = p + 2 * block;
    return crc0;
}

__attribute__((target("sse4.2"))) static uint32_t hardwareRaw(uint32_t crc32, const unsigned char *p, size_t length) {
    uint64_t crc = crc32;
    // Align to 8 bytes so the 64-bit loads of the main loop never straddle a cache line needlessly.
    while (length > 0 && ((uintptr_t)p & 7) != 0) {
        crc = _mm_crc32_u8((uint32_t)crc, *p);
        p++;
        length--;
    }
    while (length >= 3 * CCRC32C_LONG) {
        crc = threeStreams(crc, &p, CCRC32C_LONG, shiftLong);
        length -= 3 * CCRC32C_LONG;
    }
    while (length >= 3 * CCRC32C_SHORT) {
        crc = threeStreams(crc, &p, CCRC32C_SHORT, shiftShort);
        length -= 3 * CCRC32C_SHORT;
    }
    while (length >= 8) {
        crc = _mm_crc32_u64(crc, load64(p));
        p += 8;
        length -= 8;
    }
    while (length > 0) {
        crc = _mm_crc32_u8((uint32_t)crc, *p);
        p++;
        length--;
    }
    return (uint32_t)crc;
}

uint32_t ccrc32c_extend_hardware(uint32_t crc, const void *bytes, size_t length) {
    ensureInitialized();
    if (!hardwareAvailable) {
        return ~portableRaw(~crc, (const unsigned char *)bytes, length);
    }
    return ~hardwareRaw(~crc, (const unsigned char *)bytes, length);
}

#else

uint32_t ccrc32c_extend_hardware(uint32_t crc, const void *bytes, size_t length) {
    return ccrc32c_extend_portable(crc, bytes, length);
}

#endif

int ccrc32c_hardware_available(void) {
    ensureInitialized();
    return hardwareAvailable;
}

uint32_t ccrc32c_extend(uint32_t crc, const void *bytes, size_t length) {
    return ccrc32c_extend_hardware(crc, bytes, length);
}
