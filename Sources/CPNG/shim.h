#ifndef REPTOK_CPNG_SHIM_H
#define REPTOK_CPNG_SHIM_H
#include <png.h>
#endif
