#ifndef CCRC32C_H
#define CCRC32C_H
#include <stddef.h>
#include <stdint.h>
/// Extends `crc` (0 to start) with CRC-32C (Castagnoli) over `length` bytes.
uint32_t ccrc32c_extend(uint32_t crc, const void *bytes, size_t length);
#endif
