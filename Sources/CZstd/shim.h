#ifndef REPTOK_CZSTD_SHIM_H
#define REPTOK_CZSTD_SHIM_H
#include <zstd.h>
/* ZDICT_trainFromBuffer_fastCover and its parameters (exported by libzstd.so; declared behind this macro) */
#define ZDICT_STATIC_LINKING_ONLY
#include <zdict.h>
#endif
