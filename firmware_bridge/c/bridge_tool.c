/*
 * bridge_tool: the C side of the bridge's cross-checks, and a bench tool.
 *   bridge_tool selftest   CRC check value, COBS edge cases, encode/decode round trips
 *   bridge_tool decode     stdin bytes -> one canonical line per frame and a final stats line,
 *                          the same text as firmware_bridge.protocol.format_frame / DecoderStats.line
 *   bridge_tool reencode   stdin bytes -> decode, encode every known frame again -> stdout bytes
 * Build: gcc -std=c99 -Wall -Wextra -Werror -fsanitize=address,undefined -o bridge_tool bridge_tool.c
 */
#define EEB_IMPLEMENTATION
#include "edge_emo_bridge.h"

#include <stdio.h>
#include <string.h>

static void print_frame(const eeb_frame *f, eeb_result r) {
    unsigned i;
    if (r == EEB_UNKNOWN_TYPE) {
        printf("unknown seq=%u minor=%u type=%u len=%u\n", (unsigned)f->seq, (unsigned)f->version_minor,
               (unsigned)f->type, (unsigned)f->payload_len);
    } else if (f->type == EEB_MSG_UPDATE) {
        const eeb_update *u = &f->msg.update;
        printf("update seq=%u minor=%u t_ms=%lu speech=%u dominant=", (unsigned)f->seq,
               (unsigned)f->version_minor, (unsigned long)u->timestamp_ms, (unsigned)u->speech);
        if (u->dominant == EEB_NO_DOMINANT) printf("-");
        else printf("%u", (unsigned)u->dominant);
        printf(" levels=");
        for (i = 0; i < u->n_emotions; i++) printf(i ? ",%u" : "%u", (unsigned)u->levels[i]);
        printf("\n");
    } else {
        const eeb_hello *h = &f->msg.hello;
        printf("hello seq=%u minor=%u rate_centihz=%u model=%s emotions=", (unsigned)f->seq,
               (unsigned)f->version_minor, (unsigned)h->update_rate_centihz, h->model_version);
        for (i = 0; i < h->n_emotions; i++) printf(i ? ",%s" : "%s", h->emotions[i]);
        printf("\n");
    }
}

static void print_stats(const eeb_stats *s) {
    printf("stats frames=%lu unknown_types=%lu crc_errors=%lu framing_errors=%lu overruns=%lu "
           "version_errors=%lu malformed=%lu seq_gaps=%lu lost_frames=%lu out_of_order=%lu\n",
           (unsigned long)s->frames, (unsigned long)s->unknown_types, (unsigned long)s->crc_errors,
           (unsigned long)s->framing_errors, (unsigned long)s->overruns, (unsigned long)s->version_errors,
           (unsigned long)s->malformed, (unsigned long)s->seq_gaps, (unsigned long)s->lost_frames,
           (unsigned long)s->out_of_order);
}

static int run_stream(int reencode) {
    static eeb_decoder dec;
    uint8_t chunk[512], wire[EEB_MAX_WIRE];
    size_t n, i, w;
    eeb_frame frame;
    eeb_decoder_init(&dec);
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
        for (i = 0; i < n; i++) {
            eeb_result r = eeb_decoder_push(&dec, chunk[i], &frame);
            if (r != EEB_FRAME && r != EEB_UNKNOWN_TYPE) continue;
            if (!reencode) {
                print_frame(&frame, r);
            } else if (r == EEB_FRAME) {
                w = eeb_encode_wire(&frame, wire, sizeof wire);
                if (w == 0u) {
                    fprintf(stderr, "bridge_tool: cannot re-encode frame seq=%u\n", (unsigned)frame.seq);
                    return 1;
                }
                fwrite(wire, 1, w, stdout);
            }
        }
    }
    if (!reencode) print_stats(&dec.stats);
    return ferror(stdin) ? 1 : 0;
}

static int failures;

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "FAIL: %s\n", what);
        failures++;
    }
}

static void check_cobs(const uint8_t *data, size_t len, size_t expected_len, const char *what) {
    uint8_t enc[600], dec[600];
    size_t n = eeb_cobs_encode(data, len, enc, sizeof enc), i;
    long m;
    check(n == expected_len, what);
    for (i = 0; i < n; i++) check(enc[i] != 0u, what);
    m = eeb_cobs_decode(enc, n, dec);
    check(m == (long)len && memcmp(dec, data, len) == 0, what);
    check(eeb_cobs_encode(data, len, enc, n - 1u) == 0u, "COBS encode respects its capacity");
}

static int selftest(void) {
    static const uint8_t check_input[] = "123456789";
    static const uint8_t bad_cobs[] = {0x03, 0x41};
    uint8_t data[300], wire[EEB_MAX_WIRE];
    eeb_frame f, g;
    eeb_decoder dec;
    size_t n, i;
    eeb_result r = EEB_NONE;

    check(eeb_crc16(check_input, 9) == 0x29B1u, "CRC-16/CCITT-FALSE check value 0x29B1");
    check(eeb_crc16(check_input, 0) == 0xFFFFu, "CRC of nothing is the init value");

    memset(data, 0x01, sizeof data);
    check_cobs(data, 0, 1, "COBS of nothing");
    check_cobs(data, 253, 254, "COBS 253 non-zero bytes");
    check_cobs(data, 254, 255, "COBS 254 non-zero bytes: no trailing code byte");
    check_cobs(data, 255, 257, "COBS 255 non-zero bytes");
    data[254] = 0;
    check_cobs(data, 255, 257, "COBS 254 non-zero bytes and a zero");
    memset(data, 0, 10);
    check_cobs(data, 10, 11, "COBS zeros");
    check(eeb_cobs_decode(bad_cobs, sizeof bad_cobs, data) == -1, "COBS run past the end is rejected");

    memset(&f, 0, sizeof f);
    f.type = EEB_MSG_HELLO;
    f.seq = 65535u;
    f.msg.hello.update_rate_centihz = 1000u;
    strcpy(f.msg.hello.model_version, "edge-emo-0.1.0");
    f.msg.hello.n_emotions = EEB_MAX_EMOTIONS;
    for (i = 0; i < EEB_MAX_EMOTIONS; i++) strcpy(f.msg.hello.emotions[i], "abcdefghijklmn");
    check(eeb_encode_wire(&f, wire, sizeof wire) == 0u, "a hello over 255 payload bytes is refused");
    f.msg.hello.n_emotions = 6;
    strcpy(f.msg.hello.emotions[0], "has space");
    check(eeb_encode_wire(&f, wire, sizeof wire) == 0u, "a name with a space is refused");
    strcpy(f.msg.hello.emotions[0], "happiness");
    n = eeb_encode_wire(&f, wire, sizeof wire);
    check(n > 0u && wire[n - 1u] == 0u, "hello encodes");
    eeb_decoder_init(&dec);
    for (i = 0; i < n; i++) r = eeb_decoder_push(&dec, wire[i], &g);
    check(r == EEB_FRAME && g.type == EEB_MSG_HELLO && g.seq == 65535u, "hello decodes");
    check(strcmp(g.msg.hello.emotions[0], "happiness") == 0 && g.msg.hello.n_emotions == 6, "hello names");
    check(strcmp(g.msg.hello.model_version, "edge-emo-0.1.0") == 0, "hello model version");

    memset(&f, 0, sizeof f);
    f.type = EEB_MSG_UPDATE;
    f.seq = 1u; /* 65535 -> 1: one frame lost across the wrap */
    f.msg.update.timestamp_ms = 0xFFFFFFFFu;
    f.msg.update.n_emotions = 6;
    f.msg.update.dominant = 6;
    check(eeb_encode_wire(&f, wire, sizeof wire) == 0u, "dominant out of range is refused");
    f.msg.update.dominant = EEB_NO_DOMINANT;
    f.msg.update.levels[5] = 255u;
    n = eeb_encode_wire(&f, wire, sizeof wire);
    check(eeb_encode_wire(&f, wire, n - 1u) == 0u, "encode respects its capacity");
    for (i = 0; i < n; i++) r = eeb_decoder_push(&dec, wire[i], &g);
    check(r == EEB_FRAME && g.msg.update.timestamp_ms == 0xFFFFFFFFu && g.msg.update.levels[5] == 255u,
          "update decodes");
    check(dec.stats.seq_gaps == 1u && dec.stats.lost_frames == 1u, "sequence gap across the wrap");

    for (i = 0; i < 2u * EEB_MAX_ENCODED; i++) r = eeb_decoder_push(&dec, 0x55u, &g);
    check(dec.stats.overruns == 1u, "an overlong run counts one overrun");
    for (i = 0; i < n; i++) r = eeb_decoder_push(&dec, wire[i], &g);
    check(r == EEB_NONE && dec.stats.frames == 2u, "the frame glued to an overrun is dropped");
    for (i = 0; i < n; i++) r = eeb_decoder_push(&dec, wire[i], &g);
    check(r == EEB_FRAME && dec.stats.out_of_order == 1u, "resynchronised; a repeated seq is out of order");

    if (failures == 0) printf("selftest ok\n");
    return failures ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "selftest") == 0) return selftest();
    if (argc == 2 && strcmp(argv[1], "decode") == 0) return run_stream(0);
    if (argc == 2 && strcmp(argv[1], "reencode") == 0) return run_stream(1);
    fprintf(stderr, "usage: %s selftest|decode|reencode < stream\n", argv[0]);
    return 2;
}
