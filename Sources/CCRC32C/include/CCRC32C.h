#ifndef CCRC32C_H
#define CCRC32C_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Extends `crc` (0 to start) with CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) over `length` bytes,
/// so that `ccrc32c_extend(ccrc32c_extend(0, a, n), b, m)` equals the CRC of `a` followed by `b`.
///
/// Uses the SSE4.2 `crc32` instruction (three interleaved streams) when the CPU has it, chosen once at run time,
/// and the portable slicing-by-8 tables otherwise. Thread-safe: the tables are built once under `pthread_once`.
uint32_t ccrc32c_extend(uint32_t crc, const void *bytes, size_t length);

/// The portable table-driven path (slicing-by-8), whatever the CPU. Same contract as `ccrc32c_extend`; exposed so
/// tests can check both paths agree and benchmarks can compare them.
uint32_t ccrc32c_extend_portable(uint32_t crc, const void *bytes, size_t length);

/// The SSE4.2 path. Only valid when `ccrc32c_hardware_available()` returns 1; otherwise it falls back to the
/// portable path, so calling it is always safe.
uint32_t ccrc32c_extend_hardware(uint32_t crc, const void *bytes, size_t length);

/// 1 when this CPU has SSE4.2 and `ccrc32c_extend` uses it, 0 otherwise.
int ccrc32c_hardware_available(void);

#ifdef __cplusplus
}
#endif
#endif
