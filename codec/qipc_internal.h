/*
 * qipc_internal.h — helpers shared by the codec's .c files only (not installed, not for
 * other modules): byte-order-aware loads and stores and the type-byte classifier.
 * Loads assemble values from bytes, so they are independent of host byte order and of
 * alignment; callers have checked the bounds beforehand.
 */
#ifndef GW_CODEC_QIPC_INTERNAL_H
#define GW_CODEC_QIPC_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline uint16_t qipc_ld16(const uint8_t *p, bool le)
{
	return le ? (uint16_t)(p[0] | p[1] << 8) : (uint16_t)(p[1] | p[0] << 8);
}

static inline uint32_t qipc_ld32(const uint8_t *p, bool le)
{
	if (le)
		return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		       (uint32_t)p[3] << 24;
	return (uint32_t)p[3] | (uint32_t)p[2] << 8 | (uint32_t)p[1] << 16 | (uint32_t)p[0] << 24;
}

static inline uint64_t qipc_ld64(const uint8_t *p, bool le)
{
	uint64_t lo = qipc_ld32(p + (le ? 0 : 4), le);
	uint64_t hi = qipc_ld32(p + (le ? 4 : 0), le);

	return lo | hi << 32;
}

static inline void qipc_st32(uint8_t *p, uint32_t v, bool le)
{
	for (int i = 0; i < 4; i++)
		p[le ? i : 3 - i] = (uint8_t)(v >> (8 * i));
}

static inline void qipc_st64(uint8_t *p, uint64_t v, bool le)
{
	for (int i = 0; i < 8; i++)
		p[le ? i : 7 - i] = (uint8_t)(v >> (8 * i));
}

/* Type classes of a type byte as it appears on the wire. */
enum qipc_tclass {
	QIPC_TC_BAD = 0,	/* no q type has this number */
	QIPC_TC_UNSUPPORTED,	/* a real q type that never travels over IPC (enums, mapped, 112) */
	QIPC_TC_OK,		/* decodable */
};

static inline enum qipc_tclass qipc_type_class(int8_t t)
{
	if (t == -128 || t == 127)
		return QIPC_TC_OK;
	if (t >= -19 && t <= 19)
		return (t == 3 || t == -3) ? QIPC_TC_BAD : QIPC_TC_OK;
	if (t >= 98 && t <= 111)
		return QIPC_TC_OK;
	/* enumerations 20..76 (and their atoms), anymap 77, mapped 78..96, nested sym enum 97 */
	if ((t >= 20 && t <= 97) || (t <= -20 && t >= -76) || t == 112)
		return QIPC_TC_UNSUPPORTED;
	return QIPC_TC_BAD;
}

#endif /* GW_CODEC_QIPC_INTERNAL_H */
