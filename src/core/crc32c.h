/*
 * crc32c.h - CRC-32C (Castagnoli) checksums for serialized blobs.
 *
 * The polynomial is 0x1EDC6F41 (reflected 0x82F63B78), as in iSCSI, ext4
 * and PostgreSQL's WAL; crc32c("123456789") is 0xE3069283.  Plain C, table
 * driven (slicing by 8), no PostgreSQL headers, independent of byte order.
 */
#ifndef DISTILL_CORE_CRC32C_H
#define DISTILL_CORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/*
 * Extend the checksum crc with len bytes at data and return the result.
 *
 * Start a new checksum with crc = 0; the pre- and post-inversion of the
 * standard algorithm happen inside, so the returned value is the finished
 * CRC-32C of everything fed so far and can be passed back in to continue:
 *
 *     crc32c(crc32c(0, a, na), b, nb) == crc32c(0, a || b, na + nb)
 *
 * The first call builds the lookup tables (8 KB, a few microseconds); it
 * is not safe to make that first call from two threads at once.
 */
extern uint32_t crc32c(uint32_t crc, const void *data, size_t len);

#endif
