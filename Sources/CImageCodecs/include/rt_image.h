/* PNG and JPEG decoding/encoding for RepTokImage, in C because libjpeg and libpng report errors
 * by longjmp (or exit()): every call below runs the whole libjpeg/libpng session inside one C
 * function, catches errors with setjmp in that same function, and returns a status code plus a
 * one-line message. Nothing ever longjmps across a Swift frame, and nothing is printed.
 *
 * Links: -ljpeg and -lpng16, both in this target's linkerSettings in Package.swift (RepTokImage
 * also imports the CPNG module, which links png16, for the libpng header version it reports).
 *
 * Pixels out are always RGB8 interleaved (width*height*3 bytes, rows top to bottom):
 *  - PNG: palette, grey and 1/2/4-bit depths are expanded; tRNS becomes alpha; alpha (8 or 16
 *    bit) is composited over white: v = (c*a + max*(max-a) + max/2) / max at the source depth;
 *    16-bit samples are then reduced with v8 = (v16*255 + 32767) / 65535 (rounding). Adam7
 *    interlacing is handled. Ancillary chunks (text, gAMA, cHRM, sRGB, iCCP, eXIf, pHYs...) are
 *    never interpreted: iCCP only sets had_icc. Unknown critical chunks are errors.
 *  - JPEG: grey/YCbCr/RGB via libjpeg's RGB output; CMYK and YCCK via libjpeg's CMYK output, then
 *    R = (255-C)(255-K)/255 (rounded), where files with an Adobe APP14 marker store inverted
 *    CMYK (Photoshop convention: stored = 255 - ink), as PIL and ImageMagick read them.
 *    Corrupt-data warnings (premature end of file or data segment, bad Huffman/arithmetic code,
 *    resync, bogus progression, bad SOS) are errors: a truncated JPEG fails instead of decoding
 *    to grey. EXIF orientation is NOT applied here: the first APP1 "Exif\0\0" payload is
 *    returned for the caller to parse.
 * Limits are checked from the header (IHDR / SOF) before any pixel memory is allocated. */
#ifndef REPTOK_RT_IMAGE_H
#define REPTOK_RT_IMAGE_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

#define RT_IMG_MESSAGE_LENGTH 200

/* Return codes. */
enum {
    RT_IMG_OK = 0,
    RT_IMG_CORRUPT = 1,        /* malformed data; message says what libjpeg/libpng reported */
    RT_IMG_TRUNCATED = 2,      /* the data ends early */
    RT_IMG_LIMIT = 3,          /* width/height/pixels above the limits; width, height are set */
    RT_IMG_TOO_MANY_SCANS = 4, /* JPEG with more scans than limits->max_scans; scans is set */
    RT_IMG_UNSUPPORTED = 5,    /* valid but not supported (12-bit JPEG, odd colour space...) */
    RT_IMG_NO_MEMORY = 6,
    RT_IMG_BAD_ARGUMENT = 7
};

/* Colour model of the source. */
enum {
    RT_COLOR_UNKNOWN = 0,
    RT_COLOR_GREY = 1,
    RT_COLOR_GREY_ALPHA = 2,
    RT_COLOR_PALETTE = 3,
    RT_COLOR_RGB = 4,
    RT_COLOR_RGBA = 5,
    RT_COLOR_YCBCR = 6,
    RT_COLOR_CMYK = 7,
    RT_COLOR_YCCK = 8
};

typedef struct rt_img_limits {
    uint32_t max_width;
    uint32_t max_height;
    uint64_t max_pixels;
    uint32_t max_scans;       /* JPEG: most scans accepted (progressive files) */
    uint32_t max_chunk_bytes; /* PNG: png_set_chunk_malloc_max (ancillary chunk allocations) */
} rt_img_limits;

typedef struct rt_img_decoded {
    uint8_t *pixels;          /* RGB8, malloc'd; release with rt_img_decoded_free */
    uint32_t width;
    uint32_t height;
    int32_t bit_depth;        /* PNG: IHDR bit depth; JPEG: data precision */
    int32_t color;            /* RT_COLOR_* */
    int32_t had_alpha;        /* PNG alpha channel or tRNS chunk */
    int32_t had_icc;          /* PNG iCCP chunk or JPEG APP2 ICC_PROFILE segment */
    int32_t interlaced;       /* PNG Adam7 or JPEG progressive */
    int32_t adobe_inverted;   /* JPEG CMYK/YCCK read as inverted (Adobe APP14 present) */
    uint32_t scans;           /* JPEG scans read */
    uint8_t *exif;            /* JPEG: first APP1 Exif payload after "Exif\0\0" (malloc'd) */
    size_t exif_size;
    char message[RT_IMG_MESSAGE_LENGTH];
} rt_img_decoded;

typedef struct rt_img_encoded {
    uint8_t *data;            /* malloc'd; release with rt_img_encoded_free */
    size_t size;
    char message[RT_IMG_MESSAGE_LENGTH];
} rt_img_encoded;

/* Decode a whole JPEG / PNG held in memory. On failure *out holds no memory, only the message
 * (and width/height for RT_IMG_LIMIT, scans for RT_IMG_TOO_MANY_SCANS). */
int rt_jpeg_decode(const uint8_t *data, size_t size, const rt_img_limits *limits,
                   rt_img_decoded *out);
int rt_png_decode(const uint8_t *data, size_t size, const rt_img_limits *limits,
                  rt_img_decoded *out);
void rt_img_decoded_free(rt_img_decoded *d);

/* Encode RGB8 (width*height*3 bytes). JPEG: quality 1..100, chroma444 nonzero for no chroma
 * subsampling (else 4:2:0), optimized Huffman tables, baseline, JFIF. PNG: 8-bit RGB,
 * non-interlaced, zlib level 0..9, libpng's adaptive filters, no ancillary chunks. */
int rt_jpeg_encode(const uint8_t *rgb, uint32_t width, uint32_t height, int quality,
                   int chroma444, rt_img_encoded *out);
int rt_png_encode(const uint8_t *rgb, uint32_t width, uint32_t height, int level,
                  rt_img_encoded *out);
void rt_img_encoded_free(rt_img_encoded *e);

/* Library versions, for diagnostics: e.g. "1.6.39" and 62 (libjpeg API version). */
const char *rt_png_library_version(void);
int rt_jpeg_library_version(void);

#ifdef __cplusplus
}
#endif
#endif
