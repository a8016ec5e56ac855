/* JPEG decode/encode through libjpeg(-turbo), with every error caught by setjmp in the same
 * function that called libjpeg. See include/rt_image.h for the contract. */
#include "rt_image.h"

#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE and size_t */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h> /* after jpeglib.h: its message list depends on jconfig.h */

typedef struct rt_jpeg_error {
    struct jpeg_error_mgr pub; /* first: libjpeg casts cinfo->err to this struct */
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    int status;
    uint32_t max_scans;
    uint32_t scans_seen;
    char *message; /* RT_IMG_MESSAGE_LENGTH bytes */
} rt_jpeg_error;

static void rt_copy_message(char *dst, const char *src) {
    size_t n = strlen(src);
    if (n >= RT_IMG_MESSAGE_LENGTH) n = RT_IMG_MESSAGE_LENGTH - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

static void rt_jpeg_format(j_common_ptr cinfo) {
    rt_jpeg_error *e = (rt_jpeg_error *)cinfo->err;
    char buf[JMSG_LENGTH_MAX];
    buf[0] = 0;
    (*cinfo->err->format_message)(cinfo, buf);
    buf[JMSG_LENGTH_MAX - 1] = 0;
    rt_copy_message(e->message, buf);
}

static void rt_jpeg_error_exit(j_common_ptr cinfo) {
    rt_jpeg_error *e = (rt_jpeg_error *)cinfo->err;
    if (e->status == RT_IMG_OK) {
        switch (e->pub.msg_code) {
        case JERR_OUT_OF_MEMORY:
        case JERR_NO_BACKING_STORE:
            e->status = RT_IMG_NO_MEMORY;
            break;
        case JERR_IMAGE_TOO_BIG: /* above JPEG_MAX_DIMENSION (65500) */
            e->status = RT_IMG_LIMIT;
            break;
        case JERR_BAD_PRECISION:
        case JERR_CONVERSION_NOTIMPL:
        case JERR_NOT_COMPILED:
            e->status = RT_IMG_UNSUPPORTED;
            break;
        default:
            e->status = RT_IMG_CORRUPT;
            break;
        }
        rt_jpeg_format(cinfo);
    }
    longjmp(e->jump, 1);
}

/* level -1: a warning. Those that mean the entropy-coded data is damaged or missing are fatal;
 * the rest (unknown JFIF revision, extraneous bytes before a marker, odd Adobe transform code,
 * bad ICC chunk numbering) are ignored. Trace messages (level >= 0) are ignored. */
static void rt_jpeg_emit_message(j_common_ptr cinfo, int msg_level) {
    rt_jpeg_error *e = (rt_jpeg_error *)cinfo->err;
    if (msg_level >= 0) return;
    e->pub.num_warnings++;
    switch (e->pub.msg_code) {
    case JWRN_JPEG_EOF:
        e->status = RT_IMG_TRUNCATED;
        break;
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
#if defined(D_ARITH_CODING_SUPPORTED) || JPEG_LIB_VERSION >= 70
    case JWRN_ARITH_BAD_CODE:
#endif
    case JWRN_MUST_RESYNC:
    case JWRN_NOT_SEQUENTIAL:
    case JWRN_BOGUS_PROGRESSION:
        e->status = RT_IMG_CORRUPT;
        break;
    default:
        return;
    }
    rt_jpeg_format(cinfo);
    longjmp(e->jump, 1);
}

static void rt_jpeg_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void rt_jpeg_emit_quiet(j_common_ptr cinfo, int msg_level) {
    (void)cinfo;
    (void)msg_level;
}

/* Called by jpeg_start_decompress once per iMCU row while it absorbs a multi-scan file: a cap
 * on scans keeps a file of thousands of tiny progressive scans from taking minutes. */
static void rt_jpeg_progress(j_common_ptr cinfo) {
    rt_jpeg_error *e = (rt_jpeg_error *)cinfo->err;
    if (!cinfo->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > 0) e->scans_seen = (uint32_t)d->input_scan_number;
    if ((uint32_t)d->input_scan_number > e->max_scans) {
        e->status = RT_IMG_TOO_MANY_SCANS;
        snprintf(e->message, RT_IMG_MESSAGE_LENGTH, "JPEG has more than %u scans",
                 (unsigned)e->max_scans);
        longjmp(e->jump, 1);
    }
}

static void rt_jpeg_init_error(rt_jpeg_error *e, char *message, uint32_t max_scans) {
    jpeg_std_error(&e->pub);
    e->pub.error_exit = rt_jpeg_error_exit;
    e->pub.emit_message = rt_jpeg_emit_message;
    e->pub.output_message = rt_jpeg_output_message;
    e->progress.progress_monitor = rt_jpeg_progress;
    e->progress.pass_counter = 0;
    e->progress.pass_limit = 0;
    e->progress.completed_passes = 0;
    e->progress.total_passes = 0;
    e->status = RT_IMG_OK;
    e->max_scans = max_scans;
    e->scans_seen = 0;
    e->message = message;
    message[0] = 0;
}

static uint8_t rt_div255(uint32_t v) { return (uint8_t)((v + 127) / 255); }

int rt_jpeg_decode(const uint8_t *data, size_t size, const rt_img_limits *limits,
                   rt_img_decoded *out) {
    struct jpeg_decompress_struct cinfo;
    rt_jpeg_error jerr;
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile row = NULL;
    uint8_t *volatile exif = NULL;

    if (out == NULL) return RT_IMG_BAD_ARGUMENT;
    memset(out, 0, sizeof *out);
    if (data == NULL || limits == NULL || size == 0) {
        rt_copy_message(out->message, "no JPEG data");
        return RT_IMG_BAD_ARGUMENT;
    }
    memset(&cinfo, 0, sizeof cinfo);
    rt_jpeg_init_error(&jerr, out->message, limits->max_scans);
    cinfo.err = &jerr.pub;
    if (setjmp(jerr.jump)) {
        int status = jerr.status != RT_IMG_OK ? jerr.status : RT_IMG_CORRUPT;
        if (status == RT_IMG_LIMIT && out->width == 0 && out->height == 0) {
            out->width = (uint32_t)cinfo.image_width;
            out->height = (uint32_t)cinfo.image_height;
        }
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        free(row);
        free(exif);
        out->pixels = NULL;
        out->exif = NULL;
        out->exif_size = 0;
        out->scans = jerr.scans_seen;
        return status;
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &jerr.progress;
    jpeg_mem_src(&cinfo, (const unsigned char *)data, (unsigned long)size);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF); /* Exif */
    jpeg_save_markers(&cinfo, JPEG_APP0 + 2, 0xFFFF); /* ICC_PROFILE */
    (void)jpeg_read_header(&cinfo, TRUE);

    uint32_t w = cinfo.image_width, h = cinfo.image_height;
    out->width = w;
    out->height = h;
    out->bit_depth = cinfo.data_precision;
    if (w == 0 || h == 0 || w > limits->max_width || h > limits->max_height ||
        (uint64_t)w * (uint64_t)h > limits->max_pixels) {
        jerr.status = RT_IMG_LIMIT;
        snprintf(out->message, RT_IMG_MESSAGE_LENGTH, "JPEG is %ux%u, above the limits",
                 (unsigned)w, (unsigned)h);
        longjmp(jerr.jump, 1);
    }

    for (jpeg_saved_marker_ptr m = cinfo.marker_list; m != NULL; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && exif == NULL && m->data_length >= 6 &&
            memcmp(m->data, "Exif\0\0", 6) == 0) {
            size_t n = m->data_length - 6;
            exif = (uint8_t *)malloc(n > 0 ? n : 1);
            if (exif == NULL) {
                jerr.status = RT_IMG_NO_MEMORY;
                rt_copy_message(out->message, "out of memory");
                longjmp(jerr.jump, 1);
            }
            memcpy(exif, m->data + 6, n);
            out->exif_size = n;
        } else if (m->marker == JPEG_APP0 + 2 && m->data_length >= 12 &&
                   memcmp(m->data, "ICC_PROFILE\0", 12) == 0) {
            out->had_icc = 1;
        }
    }

    int cmyk = 0;
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: out->color = RT_COLOR_GREY; break;
    case JCS_YCbCr: out->color = RT_COLOR_YCBCR; break;
    case JCS_RGB: out->color = RT_COLOR_RGB; break;
    case JCS_CMYK: out->color = RT_COLOR_CMYK; cmyk = 1; break;
    case JCS_YCCK: out->color = RT_COLOR_YCCK; cmyk = 1; break;
    default:
        jerr.status = RT_IMG_UNSUPPORTED;
        snprintf(out->message, RT_IMG_MESSAGE_LENGTH,
                 "unsupported JPEG colour space (%d components)", cinfo.num_components);
        longjmp(jerr.jump, 1);
    }
    out->adobe_inverted = cmyk && cinfo.saw_Adobe_marker;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    cinfo.scale_num = 1;
    cinfo.scale_denom = 1;

    (void)jpeg_start_decompress(&cinfo);
    out->interlaced = cinfo.progressive_mode ? 1 : 0;
    if (cinfo.output_width != w || cinfo.output_height != h ||
        cinfo.output_components != (cmyk ? 4 : 3)) {
        jerr.status = RT_IMG_UNSUPPORTED;
        rt_copy_message(out->message, "unexpected JPEG output geometry");
        longjmp(jerr.jump, 1);
    }
    size_t stride = (size_t)w * 3;
    pixels = (uint8_t *)malloc(stride * (size_t)h);
    if (cmyk) row = (uint8_t *)malloc((size_t)w * 4);
    if (pixels == NULL || (cmyk && row == NULL)) {
        jerr.status = RT_IMG_NO_MEMORY;
        rt_copy_message(out->message, "out of memory for the JPEG pixels");
        longjmp(jerr.jump, 1);
    }
    int inverted = out->adobe_inverted;
    while (cinfo.output_scanline < h) {
        uint32_t y = cinfo.output_scanline;
        uint8_t *dst = pixels + (size_t)y * stride;
        JSAMPROW rp = cmyk ? (JSAMPROW)row : (JSAMPROW)dst;
        if (jpeg_read_scanlines(&cinfo, &rp, 1) != 1) {
            jerr.status = RT_IMG_TRUNCATED;
            rt_copy_message(out->message, "JPEG scanline read failed");
            longjmp(jerr.jump, 1);
        }
        if (cmyk) {
            const uint8_t *s = row;
            for (uint32_t x = 0; x < w; x++, s += 4, dst += 3) {
                /* ink amounts c, k in 0..255; inverted files store 255 - ink */
                uint32_t c0 = s[0], c1 = s[1], c2 = s[2], k = s[3];
                if (!inverted) { c0 = 255 - c0; c1 = 255 - c1; c2 = 255 - c2; k = 255 - k; }
                /* now c* and k are (255 - ink): R = (255 - C)(255 - K) / 255 */
                dst[0] = rt_div255(c0 * k);
                dst[1] = rt_div255(c1 * k);
                dst[2] = rt_div255(c2 * k);
            }
        }
    }
    out->scans = cinfo.input_scan_number > 0 ? (uint32_t)cinfo.input_scan_number : 0;
    (void)jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    out->pixels = pixels;
    out->exif = exif;
    out->message[0] = 0;
    return RT_IMG_OK;
}

int rt_jpeg_encode(const uint8_t *rgb, uint32_t width, uint32_t height, int quality,
                   int chroma444, rt_img_encoded *out) {
    struct jpeg_compress_struct cinfo;
    rt_jpeg_error jerr;
    unsigned char *buffer = NULL;
    unsigned long length = 0;

    if (out == NULL) return RT_IMG_BAD_ARGUMENT;
    memset(out, 0, sizeof *out);
    if (rgb == NULL || width == 0 || height == 0 || quality < 1 || quality > 100) {
        rt_copy_message(out->message, "bad JPEG encoder arguments");
        return RT_IMG_BAD_ARGUMENT;
    }
    if (width > JPEG_MAX_DIMENSION || height > JPEG_MAX_DIMENSION) {
        snprintf(out->message, RT_IMG_MESSAGE_LENGTH,
                 "JPEG cannot hold %ux%u (at most %ld pixels a side)", (unsigned)width,
                 (unsigned)height, (long)JPEG_MAX_DIMENSION);
        return RT_IMG_LIMIT;
    }
    memset(&cinfo, 0, sizeof cinfo);
    rt_jpeg_init_error(&jerr, out->message, 0);
    jerr.pub.emit_message = rt_jpeg_emit_quiet; /* warnings are not fatal when writing */
    cinfo.err = &jerr.pub;
    if (setjmp(jerr.jump)) {
        int status = jerr.status != RT_IMG_OK ? jerr.status : RT_IMG_CORRUPT;
        jpeg_destroy_compress(&cinfo);
        free(buffer);
        return status;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &buffer, &length);
    cinfo.image_width = width;
    cinfo.image_height = height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    if (chroma444) {
        cinfo.comp_info[0].h_samp_factor = 1;
        cinfo.comp_info[0].v_samp_factor = 1;
    } else {
        cinfo.comp_info[0].h_samp_factor = 2;
        cinfo.comp_info[0].v_samp_factor = 2;
    }
    cinfo.optimize_coding = TRUE;
    cinfo.dct_method = JDCT_ISLOW;
    jpeg_start_compress(&cinfo, TRUE);
    size_t stride = (size_t)width * 3;
    while (cinfo.next_scanline < height) {
        JSAMPROW rp = (JSAMPROW)(rgb + (size_t)cinfo.next_scanline * stride);
        (void)jpeg_write_scanlines(&cinfo, &rp, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    out->data = buffer;
    out->size = (size_t)length;
    return RT_IMG_OK;
}

int rt_jpeg_library_version(void) { return JPEG_LIB_VERSION; }
