/* PNG decode/encode through libpng 1.6, with every error caught by setjmp(png_jmpbuf) in the
 * same function that called libpng. Warnings are discarded. See include/rt_image.h. */
#include "rt_image.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

typedef struct rt_png_io {
    const uint8_t *data;
    size_t size;
    size_t pos;
    int status;
    int had_icc;
    int hit_user_limit; /* libpng warned "... exceeds user limit ..." */
    char *message;
    /* encoder output */
    uint8_t *buffer;
    size_t length;
    size_t capacity;
} rt_png_io;

static void rt_png_copy_message(char *dst, const char *src) {
    size_t n = src != NULL ? strlen(src) : 0;
    if (n >= RT_IMG_MESSAGE_LENGTH) n = RT_IMG_MESSAGE_LENGTH - 1;
    if (n > 0) memcpy(dst, src, n);
    dst[n] = 0;
}

static void rt_png_error(png_structp png, png_const_charp msg) {
    rt_png_io *io = (rt_png_io *)png_get_error_ptr(png);
    if (io->status == RT_IMG_OK) {
        /* png_set_user_limits: libpng warns "Image width exceeds user limit in IHDR", then
         * fails with "Invalid IHDR data" */
        io->status = io->hit_user_limit ? RT_IMG_LIMIT : RT_IMG_CORRUPT;
        rt_png_copy_message(io->message, msg);
    } else if (io->message[0] == 0) {
        rt_png_copy_message(io->message, msg);
    }
    png_longjmp(png, 1);
}

static void rt_png_warning(png_structp png, png_const_charp msg) {
    rt_png_io *io = (rt_png_io *)png_get_error_ptr(png);
    if (msg != NULL && strstr(msg, "exceeds user limit") != NULL) io->hit_user_limit = 1;
}

/* Stop with our own status and message. */
static void rt_png_fail(png_structp png, rt_png_io *io, int status, const char *msg) {
    io->status = status;
    rt_png_copy_message(io->message, msg);
    png_longjmp(png, 1);
}

static void rt_png_read(png_structp png, png_bytep dst, size_t n) {
    rt_png_io *io = (rt_png_io *)png_get_io_ptr(png);
    if (n > io->size - io->pos) rt_png_fail(png, io, RT_IMG_TRUNCATED, "PNG data ends early");
    memcpy(dst, io->data + io->pos, n);
    io->pos += n;
}

/* Every ancillary chunk we do not need is routed here as "unknown" and dropped; iCCP only marks
 * had_icc. An unknown critical chunk returns 0, which libpng turns into an error. */
static int rt_png_user_chunk(png_structp png, png_unknown_chunkp chunk) {
    rt_png_io *io = (rt_png_io *)png_get_user_chunk_ptr(png);
    if ((chunk->name[0] & 0x20) == 0) return 0; /* critical */
    if (memcmp(chunk->name, "iCCP", 4) == 0) io->had_icc = 1;
    return 1;
}

static const png_byte rt_png_ignored_chunks[] = {
    'i', 'C', 'C', 'P', 0, 't', 'E', 'X', 't', 0, 'z', 'T', 'X', 't', 0, 'i', 'T', 'X', 't', 0,
    'e', 'X', 'I', 'f', 0, 's', 'P', 'L', 'T', 0, 't', 'I', 'M', 'E', 0, 'p', 'C', 'A', 'L', 0,
    's', 'C', 'A', 'L', 0, 'o', 'F', 'F', 's', 0, 'p', 'H', 'Y', 's', 0, 'h', 'I', 'S', 'T', 0,
    'b', 'K', 'G', 'D', 0, 'c', 'H', 'R', 'M', 0, 'g', 'A', 'M', 'A', 0, 's', 'R', 'G', 'B', 0,
    's', 'B', 'I', 'T', 0,
};

static inline uint32_t rt_sample(const uint8_t *p, int sixteen) {
    return sixteen ? ((uint32_t)p[0] << 8 | p[1]) : p[0];
}

/* One decoded row (after expand/tRNS transforms: 1-4 channels, 8 or 16 bits, big-endian) to
 * RGB8, compositing alpha over white at the source depth, then rounding 16 -> 8 bits. */
static void rt_png_convert_row(const uint8_t *src, uint8_t *dst, uint32_t width, int channels,
                               int depth) {
    int sixteen = depth == 16;
    size_t step = sixteen ? 2 : 1;
    uint64_t maxv = sixteen ? 65535 : 255;
    for (uint32_t x = 0; x < width; x++) {
        uint64_t c[3], a = maxv;
        if (channels <= 2) {
            c[0] = c[1] = c[2] = rt_sample(src, sixteen);
            if (channels == 2) a = rt_sample(src + step, sixteen);
        } else {
            c[0] = rt_sample(src, sixteen);
            c[1] = rt_sample(src + step, sixteen);
            c[2] = rt_sample(src + 2 * step, sixteen);
            if (channels == 4) a = rt_sample(src + 3 * step, sixteen);
        }
        src += step * (size_t)channels;
        for (int i = 0; i < 3; i++) {
            uint64_t v = c[i];
            if (a != maxv) v = (v * a + maxv * (maxv - a) + maxv / 2) / maxv;
            if (sixteen) v = (v * 255 + 32767) / 65535;
            dst[i] = (uint8_t)v;
        }
        dst += 3;
    }
}

int rt_png_decode(const uint8_t *data, size_t size, const rt_img_limits *limits,
                  rt_img_decoded *out) {
    rt_png_io io;
    png_structp png = NULL;
    png_infop info = NULL;
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile rows = NULL;
    png_bytep *volatile row_pointers = NULL;

    if (out == NULL) return RT_IMG_BAD_ARGUMENT;
    memset(out, 0, sizeof *out);
    if (data == NULL || limits == NULL || size == 0) {
        rt_png_copy_message(out->message, "no PNG data");
        return RT_IMG_BAD_ARGUMENT;
    }
    memset(&io, 0, sizeof io);
    io.data = data;
    io.size = size;
    io.message = out->message;

    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &io, rt_png_error, rt_png_warning);
    if (png == NULL) {
        rt_png_copy_message(out->message, "png_create_read_struct failed");
        return RT_IMG_NO_MEMORY;
    }
    info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        rt_png_copy_message(out->message, "png_create_info_struct failed");
        return RT_IMG_NO_MEMORY;
    }
    if (setjmp(png_jmpbuf(png))) {
        int status = io.status != RT_IMG_OK ? io.status : RT_IMG_CORRUPT;
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(rows);
        free(row_pointers);
        out->pixels = NULL;
        return status;
    }
    png_set_read_fn(png, &io, rt_png_read);
    png_set_user_limits(png, limits->max_width, limits->max_height);
    /* 0 would mean "no limit" to libpng */
    png_set_chunk_malloc_max(png, limits->max_chunk_bytes ? limits->max_chunk_bytes : 1);
    png_set_chunk_cache_max(png, 1000);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, rt_png_ignored_chunks,
                                (int)(sizeof rt_png_ignored_chunks / 5));
    png_set_read_user_chunk_fn(png, &io, rt_png_user_chunk);

    png_read_info(png, info);
    png_uint_32 w = 0, h = 0;
    int depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &depth, &color_type, &interlace, NULL, NULL);
    out->width = w;
    out->height = h;
    out->bit_depth = depth;
    if (w == 0 || h == 0 || w > limits->max_width || h > limits->max_height ||
        (uint64_t)w * (uint64_t)h > limits->max_pixels) {
        snprintf(out->message, RT_IMG_MESSAGE_LENGTH, "PNG is %ux%u, above the limits",
                 (unsigned)w, (unsigned)h);
        io.status = RT_IMG_LIMIT;
        png_longjmp(png, 1);
    }
    int has_trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY: out->color = RT_COLOR_GREY; break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: out->color = RT_COLOR_GREY_ALPHA; break;
    case PNG_COLOR_TYPE_PALETTE: out->color = RT_COLOR_PALETTE; break;
    case PNG_COLOR_TYPE_RGB: out->color = RT_COLOR_RGB; break;
    case PNG_COLOR_TYPE_RGB_ALPHA: out->color = RT_COLOR_RGBA; break;
    default: rt_png_fail(png, &io, RT_IMG_CORRUPT, "invalid PNG colour type");
    }
    out->had_alpha = (color_type & PNG_COLOR_MASK_ALPHA) != 0 || has_trns;
    out->interlaced = interlace != PNG_INTERLACE_NONE;

    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (has_trns) png_set_tRNS_to_alpha(png);
    (void)png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int channels = png_get_channels(png, info);
    int out_depth = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (channels < 1 || channels > 4 || (out_depth != 8 && out_depth != 16) ||
        rowbytes != (size_t)w * (size_t)channels * (size_t)(out_depth / 8)) {
        rt_png_fail(png, &io, RT_IMG_UNSUPPORTED, "unexpected PNG row layout after transforms");
    }
    size_t stride = (size_t)w * 3;
    pixels = (uint8_t *)malloc(stride * (size_t)h);
    if (pixels == NULL) rt_png_fail(png, &io, RT_IMG_NO_MEMORY, "out of memory for PNG pixels");
    if (out->interlaced) {
        /* Adam7 passes refine rows in place: the whole image must be held at source layout. */
        rows = (uint8_t *)malloc(rowbytes * (size_t)h);
        row_pointers = (png_bytep *)malloc(sizeof(png_bytep) * (size_t)h);
        if (rows == NULL || row_pointers == NULL)
            rt_png_fail(png, &io, RT_IMG_NO_MEMORY, "out of memory for PNG rows");
        for (png_uint_32 y = 0; y < h; y++) row_pointers[y] = rows + (size_t)y * rowbytes;
        png_read_image(png, row_pointers);
        for (png_uint_32 y = 0; y < h; y++)
            rt_png_convert_row(row_pointers[y], pixels + (size_t)y * stride, w, channels,
                               out_depth);
    } else {
        rows = (uint8_t *)malloc(rowbytes);
        if (rows == NULL) rt_png_fail(png, &io, RT_IMG_NO_MEMORY, "out of memory for a PNG row");
        for (png_uint_32 y = 0; y < h; y++) {
            png_read_row(png, rows, NULL);
            rt_png_convert_row(rows, pixels + (size_t)y * stride, w, channels, out_depth);
        }
    }
    png_read_end(png, NULL); /* chunks after IDAT through IEND: CRCs checked, truncation caught */
    out->had_icc = io.had_icc;
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    free(row_pointers);
    out->pixels = pixels;
    out->message[0] = 0;
    return RT_IMG_OK;
}

static void rt_png_write(png_structp png, png_bytep src, size_t n) {
    rt_png_io *io = (rt_png_io *)png_get_io_ptr(png);
    if (n > io->capacity - io->length) {
        size_t need = io->length + n;
        if (need < io->length) rt_png_fail(png, io, RT_IMG_NO_MEMORY, "PNG output too large");
        size_t cap = io->capacity ? io->capacity : 65536;
        while (cap < need) {
            if (cap > ((size_t)-1) / 2) { cap = need; break; }
            cap *= 2;
        }
        uint8_t *grown = (uint8_t *)realloc(io->buffer, cap);
        if (grown == NULL) rt_png_fail(png, io, RT_IMG_NO_MEMORY, "out of memory writing PNG");
        io->buffer = grown;
        io->capacity = cap;
    }
    memcpy(io->buffer + io->length, src, n);
    io->length += n;
}

static void rt_png_flush(png_structp png) { (void)png; }

int rt_png_encode(const uint8_t *rgb, uint32_t width, uint32_t height, int level,
                  rt_img_encoded *out) {
    rt_png_io io;
    png_structp png = NULL;
    png_infop info = NULL;

    if (out == NULL) return RT_IMG_BAD_ARGUMENT;
    memset(out, 0, sizeof *out);
    if (rgb == NULL || width == 0 || height == 0 || width > 0x7fffffffu ||
        height > 0x7fffffffu || level < 0 || level > 9) {
        rt_png_copy_message(out->message, "bad PNG encoder arguments");
        return RT_IMG_BAD_ARGUMENT;
    }
    memset(&io, 0, sizeof io);
    io.message = out->message;
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &io, rt_png_error, rt_png_warning);
    if (png == NULL) {
        rt_png_copy_message(out->message, "png_create_write_struct failed");
        return RT_IMG_NO_MEMORY;
    }
    info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_write_struct(&png, NULL);
        rt_png_copy_message(out->message, "png_create_info_struct failed");
        return RT_IMG_NO_MEMORY;
    }
    if (setjmp(png_jmpbuf(png))) {
        int status = io.status != RT_IMG_OK ? io.status : RT_IMG_CORRUPT;
        png_destroy_write_struct(&png, &info);
        free(io.buffer);
        return status;
    }
    png_set_write_fn(png, &io, rt_png_write, rt_png_flush);
    png_set_user_limits(png, 0x7fffffffu, 0x7fffffffu);
    png_set_compression_level(png, level);
    png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t stride = (size_t)width * 3;
    for (uint32_t y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * stride));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    out->data = io.buffer;
    out->size = io.length;
    return RT_IMG_OK;
}

void rt_img_decoded_free(rt_img_decoded *d) {
    if (d == NULL) return;
    free(d->pixels);
    free(d->exif);
    d->pixels = NULL;
    d->exif = NULL;
    d->exif_size = 0;
}

void rt_img_encoded_free(rt_img_encoded *e) {
    if (e == NULL) return;
    free(e->data);
    e->data = NULL;
    e->size = 0;
}

const char *rt_png_library_version(void) { return png_get_libpng_ver(NULL); }
