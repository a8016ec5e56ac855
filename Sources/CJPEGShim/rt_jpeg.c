#include "rt_jpeg.h"
int rt_jpeg_placeholder(void) { return 0; }
