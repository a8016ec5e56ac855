#ifndef REPTOK_RT_JPEG_H
#define REPTOK_RT_JPEG_H
/* in progress */
int rt_jpeg_placeholder(void);
#endif
