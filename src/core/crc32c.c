/*
 * crc32c.c - CRC-32C, slicing by 8.
 *
 * table[0] is the classic byte-at-a-time table of the reflected polynomial;
 * table[k][n] is the CRC of byte n followed by k zero bytes, which lets the
 * main loop fold eight input bytes per step with eight independent lookups.
 */
#include "core/crc32c.h"

#include <stdbool.h>

#define CRC32C_POLY 0x82F63B78u	/* 0x1EDC6F41 bit-reversed */

static uint32_t table[8][256];
static bool table_ready = false;

static void
build_tables(void)
{
	for (uint32_t n = 0; n < 256; n++)
	{
		uint32_t	c = n;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		table[0][n] = c;
	}
	for (uint32_t n = 0; n < 256; n++)
		for (int k = 1; k < 8; k++)
			table[k][n] = table[0][table[k - 1][n] & 0xFF] ^
				(table[k - 1][n] >> 8);
	table_ready = true;
}

uint32_t
crc32c(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;

	if (!table_ready)
		build_tables();

	crc = ~crc;
	for (; len >= 8; p += 8, len -= 8)
	{
		/* Assembled byte by byte so that host byte order does not matter. */
		crc ^= (uint32_t) p[0] | (uint32_t) p[1] << 8 |
			(uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
		crc = table[7][crc & 0xFF] ^ table[6][(crc >> 8) & 0xFF] ^
			table[5][(crc >> 16) & 0xFF] ^ table[4][crc >> 24] ^
			table[3][p[4]] ^ table[2][p[5]] ^ table[1][p[6]] ^ table[0][p[7]];
	}
	for (; len > 0; p++, len--)
		crc = table[0][(crc ^ *p) & 0xFF] ^ (crc >> 8);
	return ~crc;
}
