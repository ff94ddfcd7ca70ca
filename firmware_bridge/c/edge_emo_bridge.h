/*
 * edge_emo_bridge.h: encoder and streaming decoder for the edge-emo firmware bridge, protocol 1.x.
 * The spec is firmware_bridge/PROTOCOL.md. C99, header-only, no malloc, no globals, fixed buffers.
 *
 * Use: in exactly one .c file
 *     #define EEB_IMPLEMENTATION
 *     #include "edge_emo_bridge.h"
 * and include it without the define anywhere else.
 *
 * Receiving (e.g. from a UART interrupt or a read loop), one byte at a time:
 *     static eeb_decoder dec;              // about 300 bytes
 *     eeb_decoder_init(&dec);
 *     eeb_frame frame;
 *     if (eeb_decoder_push(&dec, byte, &frame) == EEB_FRAME && frame.type == EEB_MSG_UPDATE) {
 *         show(frame.msg.update.dominant, frame.msg.update.levels);   // level / 85.0 = intensity 0..3
 *     }
 */
#ifndef EDGE_EMO_BRIDGE_H
#define EDGE_EMO_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EEB_PROTOCOL_MAJOR 1u
#define EEB_PROTOCOL_MINOR 0u

#define EEB_MSG_HELLO 0x01u
#define EEB_MSG_UPDATE 0x02u

#define EEB_HEADER_SIZE 5u /* version, type, seq (2), payload length */
#define EEB_CRC_SIZE 2u
#define EEB_MAX_PAYLOAD 255u
#define EEB_MAX_BODY (EEB_HEADER_SIZE + EEB_MAX_PAYLOAD + EEB_CRC_SIZE)   /* 262 */
#define EEB_MAX_ENCODED (EEB_MAX_BODY + EEB_MAX_BODY / 254u + 1u)         /* 264, COBS */
#define EEB_MAX_WIRE (EEB_MAX_ENCODED + 1u)                               /* with the 0x00 */

#define EEB_MAX_EMOTIONS 16u
#define EEB_MAX_NAME 15u
#define EEB_MAX_MODEL_VERSION 31u
#define EEB_NO_DOMINANT 0xFFu
#define EEB_FLAG_SPEECH 0x01u
#define EEB_LEVELS_PER_UNIT 85u /* level 0..255 = intensity 0..3 */

typedef struct {
    uint32_t timestamp_ms;
    uint8_t speech;                   /* 0 or 1 */
    uint8_t dominant;                 /* emotion index, or EEB_NO_DOMINANT */
    uint8_t n_emotions;               /* 1..EEB_MAX_EMOTIONS */
    uint8_t levels[EEB_MAX_EMOTIONS]; /* in the hello's emotion order */
} eeb_update;

typedef struct {
    uint16_t update_rate_centihz;                    /* 1000 = 10 Hz, 0 = irregular */
    char model_version[EEB_MAX_MODEL_VERSION + 1u];  /* NUL-terminated, printable ASCII */
    uint8_t n_emotions;                              /* 1..EEB_MAX_EMOTIONS */
    char emotions[EEB_MAX_EMOTIONS][EEB_MAX_NAME + 1u];
} eeb_hello;

typedef struct {
    uint8_t version_minor; /* the sender's minor version */
    uint8_t type;          /* EEB_MSG_*; msg is filled for known types only */
    uint16_t seq;
    uint8_t payload_len;
    union {
        eeb_update update;
        eeb_hello hello;
    } msg;
} eeb_frame;

typedef enum {
    EEB_NONE = 0,        /* byte consumed, no frame ended */
    EEB_FRAME,           /* a valid frame of a known type is in *out */
    EEB_UNKNOWN_TYPE,    /* a valid frame of an unknown type: header in *out, skip it */
    EEB_ERR_FRAMING,     /* COBS invalid or too short */
    EEB_ERR_CRC,
    EEB_ERR_OVERRUN,     /* more than EEB_MAX_ENCODED bytes without a delimiter */
    EEB_ERR_VERSION,     /* another major version */
    EEB_ERR_MALFORMED    /* CRC fine, contents impossible */
} eeb_result;

typedef struct {
    uint32_t frames, unknown_types, crc_errors, framing_errors, overruns, version_errors, malformed;
    uint32_t seq_gaps, lost_frames, out_of_order;
} eeb_stats;

typedef struct {
    eeb_stats stats;
    uint8_t buf[EEB_MAX_ENCODED]; /* the frame being received; decoded in place */
    uint16_t len;
    uint8_t discarding;           /* inside an overlong run, until the next 0x00 */
    uint8_t have_seq;
    uint16_t last_seq;
} eeb_decoder;

/* CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0): "123456789" -> 0x29B1. */
uint16_t eeb_crc16(const uint8_t *data, size_t len);

/* COBS. encode returns the encoded length (>= 1), or 0 if dst_cap is too small. decode may work in place
 * (dst == src); it returns the decoded length, or -1 if src is not valid COBS. */
size_t eeb_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t dst_cap);
long eeb_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst);

/* Check and parse one unstuffed frame body (header | payload | CRC). Returns EEB_FRAME, EEB_UNKNOWN_TYPE or
 * an EEB_ERR_*; never reads outside body[0..len). */
eeb_result eeb_decode_body(const uint8_t *body, size_t len, eeb_frame *out);

/* Encode frame->type with frame->seq and frame->msg (version_minor and payload_len are ignored).
 * body: header | payload | CRC. wire: COBS(body) and the 0x00 delimiter, at most EEB_MAX_WIRE bytes.
 * Both return the length written, or 0 if the message is invalid or dst_cap too small. */
size_t eeb_encode_body(const eeb_frame *frame, uint8_t *dst, size_t dst_cap);
size_t eeb_encode_wire(const eeb_frame *frame, uint8_t *dst, size_t dst_cap);

void eeb_decoder_init(eeb_decoder *dec);
/* Feed one received byte. On EEB_FRAME / EEB_UNKNOWN_TYPE *out holds the frame; otherwise *out is
 * unspecified. Errors are also counted in dec->stats; the decoder resynchronises at the next 0x00. */
eeb_result eeb_decoder_push(eeb_decoder *dec, uint8_t byte, eeb_frame *out);

#ifdef __cplusplus
}
#endif

#endif /* EDGE_EMO_BRIDGE_H */

#ifdef EEB_IMPLEMENTATION
#ifndef EEB_IMPLEMENTATION_DONE
#define EEB_IMPLEMENTATION_DONE

#include <string.h>

uint16_t eeb_crc16(const uint8_t *data, size_t len) {
    uint16_t crc = 0xFFFFu;
    size_t i;
    int bit;
    for (i = 0; i < len; i++) {
        crc = (uint16_t)(crc ^ ((uint16_t)data[i] << 8));
        for (bit = 0; bit < 8; bit++) {
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

size_t eeb_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t dst_cap) {
    size_t code_at = 0, out = 1, i;
    uint8_t code = 1;
    if (dst_cap < 1u) return 0;
    for (i = 0; i < len; i++) {
        if (src[i] != 0u) {
            if (out >= dst_cap) return 0;
            dst[out++] = src[i];
            code++;
        }
        if (src[i] == 0u || code == 0xFFu) {
            dst[code_at] = code;
            /* A full run (0xFF) ending the input needs no further code byte. */
            if (src[i] != 0u && i + 1u == len) return out;
            if (out >= dst_cap) return 0;
            code_at = out++;
            code = 1;
        }
    }
    dst[code_at] = code;
    return out;
}

long eeb_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst) {
    size_t in = 0, out = 0;
    while (in < len) {
        uint8_t code = src[in++];
        size_t run, k;
        if (code == 0u) return -1;
        run = (size_t)code - 1u;
        if (run > len - in) return -1;
        for (k = 0; k < run; k++) {
            if (src[in] == 0u) return -1;
            dst[out++] = src[in++]; /* out < in always, so decoding in place is safe */
        }
        if (in < len && code < 0xFFu) dst[out++] = 0u;
    }
    return (long)out;
}

static int eeb__printable(const uint8_t *s, size_t n, uint8_t forbidden) {
    size_t i;
    for (i = 0; i < n; i++) {
        if (s[i] < 0x21u || s[i] > 0x7Eu || s[i] == forbidden) return 0;
    }
    return 1;
}

/* Reads a length-prefixed text field at p[*at] into dst (NUL-terminated); 0 if it does not fit the rules. */
static int eeb__take_text(const uint8_t *p, size_t len, size_t *at, size_t min_len, size_t max_len,
                          uint8_t forbidden, char *dst) {
    size_t n;
    if (*at >= len) return 0;
    n = p[*at];
    if (n < min_len || n > max_len || n > len - *at - 1u) return 0;
    if (!eeb__printable(p + *at + 1u, n, forbidden)) return 0;
    memcpy(dst, p + *at + 1u, n);
    dst[n] = '\0';
    *at += 1u + n;
    return 1;
}

static eeb_result eeb__parse_update(const uint8_t *p, size_t len, eeb_update *u) {
    if (len < 7u) return EEB_ERR_MALFORMED;
    u->timestamp_ms = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    u->speech = (uint8_t)(p[4] & EEB_FLAG_SPEECH); /* other flag bits are reserved: ignored */
    u->dominant = p[5];
    u->n_emotions = p[6];
    if (u->n_emotions < 1u || u->n_emotions > EEB_MAX_EMOTIONS || len < 7u + (size_t)u->n_emotions)
        return EEB_ERR_MALFORMED;
    if (u->dominant != EEB_NO_DOMINANT && u->dominant >= u->n_emotions) return EEB_ERR_MALFORMED;
    memcpy(u->levels, p + 7, u->n_emotions);
    return EEB_FRAME;
}

static eeb_result eeb__parse_hello(const uint8_t *p, size_t len, eeb_hello *h) {
    size_t at = 2, i;
    if (len < 2u) return EEB_ERR_MALFORMED;
    h->update_rate_centihz = (uint16_t)(p[0] | (p[1] << 8));
    if (!eeb__take_text(p, len, &at, 0u, EEB_MAX_MODEL_VERSION, 0u, h->model_version)) return EEB_ERR_MALFORMED;
    if (at >= len || p[at] < 1u || p[at] > EEB_MAX_EMOTIONS) return EEB_ERR_MALFORMED;
    h->n_emotions = p[at++];
    for (i = 0; i < h->n_emotions; i++) {
        if (!eeb__take_text(p, len, &at, 1u, EEB_MAX_NAME, (uint8_t)',', h->emotions[i])) return EEB_ERR_MALFORMED;
    }
    return EEB_FRAME;
}

eeb_result eeb_decode_body(const uint8_t *body, size_t len, eeb_frame *out) {
    const uint8_t *payload = body + EEB_HEADER_SIZE;
    uint16_t crc;
    if (len < EEB_HEADER_SIZE + EEB_CRC_SIZE) return EEB_ERR_FRAMING;
    crc = (uint16_t)(body[len - 2u] | (body[len - 1u] << 8));
    if (eeb_crc16(body, len - EEB_CRC_SIZE) != crc) return EEB_ERR_CRC;
    if ((body[0] >> 4) != EEB_PROTOCOL_MAJOR) return EEB_ERR_VERSION;
    out->version_minor = (uint8_t)(body[0] & 0x0Fu);
    out->type = body[1];
    out->seq = (uint16_t)(body[2] | (body[3] << 8));
    out->payload_len = body[4];
    if (EEB_HEADER_SIZE + (size_t)out->payload_len + EEB_CRC_SIZE != len) return EEB_ERR_MALFORMED;
    /* Payload bytes after the fields we know come from a newer minor version: ignored. */
    if (out->type == EEB_MSG_UPDATE) return eeb__parse_update(payload, out->payload_len, &out->msg.update);
    if (out->type == EEB_MSG_HELLO) return eeb__parse_hello(payload, out->payload_len, &out->msg.hello);
    return EEB_UNKNOWN_TYPE;
}

static size_t eeb__put_text(const char *s, size_t min_len, size_t max_len, uint8_t forbidden, uint8_t *dst,
                            size_t at, size_t cap) {
    size_t n = 0;
    while (n <= max_len && s[n] != '\0') n++;
    if (n < min_len || n > max_len || !eeb__printable((const uint8_t *)s, n, forbidden)) return 0;
    if (at + 1u + n > cap) return 0;
    dst[at] = (uint8_t)n;
    memcpy(dst + at + 1u, s, n);
    return at + 1u + n;
}

/* Writes the payload at dst[at..]; returns the end offset, or 0 on an invalid message or short buffer. */
static size_t eeb__put_payload(const eeb_frame *f, uint8_t *dst, size_t at, size_t cap) {
    size_t i;
    if (f->type == EEB_MSG_UPDATE) {
        const eeb_update *u = &f->msg.update;
        if (u->n_emotions < 1u || u->n_emotions > EEB_MAX_EMOTIONS || u->speech > 1u) return 0;
        if (u->dominant != EEB_NO_DOMINANT && u->dominant >= u->n_emotions) return 0;
        if (at + 7u + u->n_emotions > cap) return 0;
        for (i = 0; i < 4u; i++) dst[at + i] = (uint8_t)(u->timestamp_ms >> (8u * i));
        dst[at + 4u] = u->speech ? EEB_FLAG_SPEECH : 0u;
        dst[at + 5u] = u->dominant;
        dst[at + 6u] = u->n_emotions;
        memcpy(dst + at + 7u, u->levels, u->n_emotions);
        return at + 7u + u->n_emotions;
    }
    if (f->type == EEB_MSG_HELLO) {
        const eeb_hello *h = &f->msg.hello;
        if (h->n_emotions < 1u || h->n_emotions > EEB_MAX_EMOTIONS || at + 3u > cap) return 0;
        dst[at] = (uint8_t)(h->update_rate_centihz & 0xFFu);
        dst[at + 1u] = (uint8_t)(h->update_rate_centihz >> 8);
        at = eeb__put_text(h->model_version, 0u, EEB_MAX_MODEL_VERSION, 0u, dst, at + 2u, cap);
        if (at == 0u || at >= cap) return 0;
        dst[at++] = h->n_emotions;
        for (i = 0; i < h->n_emotions && at != 0u; i++) {
            at = eeb__put_text(h->emotions[i], 1u, EEB_MAX_NAME, (uint8_t)',', dst, at, cap);
        }
        return at;
    }
    return 0;
}

size_t eeb_encode_body(const eeb_frame *frame, uint8_t *dst, size_t dst_cap) {
    size_t end, payload_len;
    uint16_t crc;
    /* The payload may not exceed 255 bytes whatever the caller's buffer. */
    size_t cap = dst_cap < EEB_MAX_BODY - EEB_CRC_SIZE ? dst_cap : EEB_MAX_BODY - EEB_CRC_SIZE;
    if (cap < EEB_HEADER_SIZE) return 0;
    end = eeb__put_payload(frame, dst, EEB_HEADER_SIZE, cap);
    if (end == 0u || end + EEB_CRC_SIZE > dst_cap) return 0;
    payload_len = end - EEB_HEADER_SIZE;
    dst[0] = (uint8_t)((EEB_PROTOCOL_MAJOR << 4) | EEB_PROTOCOL_MINOR);
    dst[1] = frame->type;
    dst[2] = (uint8_t)(frame->seq & 0xFFu);
    dst[3] = (uint8_t)(frame->seq >> 8);
    dst[4] = (uint8_t)payload_len;
    crc = eeb_crc16(dst, end);
    dst[end] = (uint8_t)(crc & 0xFFu);
    dst[end + 1u] = (uint8_t)(crc >> 8);
    return end + EEB_CRC_SIZE;
}

size_t eeb_encode_wire(const eeb_frame *frame, uint8_t *dst, size_t dst_cap) {
    uint8_t body[EEB_MAX_BODY];
    size_t body_len = eeb_encode_body(frame, body, sizeof body), n;
    if (body_len == 0u || dst_cap < 1u) return 0;
    n = eeb_cobs_encode(body, body_len, dst, dst_cap - 1u);
    if (n == 0u) return 0;
    dst[n] = 0u;
    return n + 1u;
}

void eeb_decoder_init(eeb_decoder *dec) { memset(dec, 0, sizeof *dec); }

static void eeb__track(eeb_decoder *dec, const eeb_frame *f, eeb_result r) {
    if (r == EEB_FRAME) dec->stats.frames++;
    else dec->stats.unknown_types++;
    /* A hello starts a new session (the sender may have restarted), so it never counts as a gap. */
    if (dec->have_seq && !(r == EEB_FRAME && f->type == EEB_MSG_HELLO)) {
        uint16_t step = (uint16_t)(f->seq - dec->last_seq);
        if (step == 0u || step > 0x8000u) {
            dec->stats.out_of_order++;
        } else if (step > 1u) {
            dec->stats.seq_gaps++;
            dec->stats.lost_frames += (uint32_t)step - 1u;
        }
    }
    dec->have_seq = 1u;
    dec->last_seq = f->seq;
}

eeb_result eeb_decoder_push(eeb_decoder *dec, uint8_t byte, eeb_frame *out) {
    long body_len;
    eeb_result r;
    size_t len;
    if (byte != 0u) {
        if (dec->discarding) return EEB_NONE;
        if (dec->len >= EEB_MAX_ENCODED) {
            dec->discarding = 1u;
            dec->len = 0;
            dec->stats.overruns++;
            return EEB_ERR_OVERRUN;
        }
        dec->buf[dec->len++] = byte;
        return EEB_NONE;
    }
    len = dec->len;
    dec->len = 0;
    if (dec->discarding) {
        dec->discarding = 0u;
        return EEB_NONE;
    }
    if (len == 0u) return EEB_NONE; /* empty frames are allowed between delimiters */
    body_len = eeb_cobs_decode(dec->buf, len, dec->buf);
    r = body_len < 0 ? EEB_ERR_FRAMING : eeb_decode_body(dec->buf, (size_t)body_len, out);
    switch (r) {
    case EEB_FRAME:
    case EEB_UNKNOWN_TYPE: eeb__track(dec, out, r); break;
    case EEB_ERR_FRAMING: dec->stats.framing_errors++; break;
    case EEB_ERR_CRC: dec->stats.crc_errors++; break;
    case EEB_ERR_VERSION: dec->stats.version_errors++; break;
    case EEB_ERR_MALFORMED: dec->stats.malformed++; break;
    case EEB_NONE:
    case EEB_ERR_OVERRUN: break;
    }
    return r;
}

#endif /* EEB_IMPLEMENTATION_DONE */
#endif /* EEB_IMPLEMENTATION */
