#ifndef REPTOK_CZSTD_SHIM_H
#define REPTOK_CZSTD_SHIM_H
#include <zstd.h>
#include <zdict.h>
#endif
