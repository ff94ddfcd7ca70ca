/*
 * Fuzzing the C decoder. Every input goes through the streaming decoder byte by byte and through
 * eeb_decode_body, from an exactly sized heap copy so that AddressSanitizer sees any read past the end.
 * Invariants checked on every accepted frame: fields within the spec's ranges, and the C encoder accepts
 * the frame and decodes back to the same values. Bodies with 1..3 flipped bits must fail the CRC
 * (CRC-16/CCITT-FALSE has Hamming distance 4 up to 32751 bits).
 *
 * Seeded loop (CI):  gcc -std=c99 -Wall -Wextra -Werror -fsanitize=address,undefined fuzz_bridge.c
 *                    ./a.out SEED ITERATIONS
 * libFuzzer:         clang -DEEB_LIBFUZZER -g -O1 -fsanitize=fuzzer,address,undefined fuzz_bridge.c
 * (see benchmarks/fuzz_bridge.sh)
 */
#define EEB_IMPLEMENTATION
#include "edge_emo_bridge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void require(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_bridge: invariant broken: %s\n", what);
        abort();
    }
}

static int valid_text(const char *s, size_t min_len, size_t max_len, char forbidden) {
    size_t n = 0;
    while (n <= max_len && s[n] != '\0') {
        if (s[n] < 0x21 || s[n] > 0x7E || s[n] == forbidden) return 0;
        n++;
    }
    return n >= min_len && n <= max_len;
}

static int same_message(const eeb_frame *a, const eeb_frame *b) {
    unsigned i;
    if (a->type != b->type || a->seq != b->seq) return 0;
    if (a->type == EEB_MSG_UPDATE) {
        const eeb_update *u = &a->msg.update, *v = &b->msg.update;
        return u->timestamp_ms == v->timestamp_ms && u->speech == v->speech && u->dominant == v->dominant &&
               u->n_emotions == v->n_emotions && memcmp(u->levels, v->levels, u->n_emotions) == 0;
    }
    if (a->msg.hello.update_rate_centihz != b->msg.hello.update_rate_centihz ||
        strcmp(a->msg.hello.model_version, b->msg.hello.model_version) != 0 ||
        a->msg.hello.n_emotions != b->msg.hello.n_emotions)
        return 0;
    for (i = 0; i < a->msg.hello.n_emotions; i++) {
        if (strcmp(a->msg.hello.emotions[i], b->msg.hello.emotions[i]) != 0) return 0;
    }
    return 1;
}

static void check_accepted(const eeb_frame *f) {
    uint8_t body[EEB_MAX_BODY];
    eeb_frame again;
    size_t n, i;
    require(f->type == EEB_MSG_UPDATE || f->type == EEB_MSG_HELLO, "known type");
    if (f->type == EEB_MSG_UPDATE) {
        const eeb_update *u = &f->msg.update;
        require(u->n_emotions >= 1u && u->n_emotions <= EEB_MAX_EMOTIONS, "update emotion count");
        require(u->dominant == EEB_NO_DOMINANT || u->dominant < u->n_emotions, "dominant index");
        require(u->speech <= 1u, "speech flag");
    } else {
        const eeb_hello *h = &f->msg.hello;
        require(h->n_emotions >= 1u && h->n_emotions <= EEB_MAX_EMOTIONS, "hello emotion count");
        require(valid_text(h->model_version, 0, EEB_MAX_MODEL_VERSION, 0), "model version text");
        for (i = 0; i < h->n_emotions; i++) require(valid_text(h->emotions[i], 1, EEB_MAX_NAME, ','), "name");
    }
    n = eeb_encode_body(f, body, sizeof body);
    require(n > 0u, "an accepted frame re-encodes");
    require(eeb_decode_body(body, n, &again) == EEB_FRAME && same_message(f, &again), "re-encoding round trip");
}

static void check_input(const uint8_t *data, size_t size) {
    static eeb_decoder dec;
    uint8_t *copy = (uint8_t *)malloc(size ? size : 1u);
    eeb_frame frame;
    eeb_result r;
    size_t i;
    long m;
    require(copy != NULL, "malloc");
    if (size) memcpy(copy, data, size);
    eeb_decoder_init(&dec);
    for (i = 0; i < size; i++) {
        r = eeb_decoder_push(&dec, copy[i], &frame);
        if (r == EEB_FRAME) check_accepted(&frame);
    }
    r = eeb_decode_body(copy, size, &frame);
    if (r == EEB_FRAME) check_accepted(&frame);
    m = eeb_cobs_decode(copy, size, copy); /* in place, as the stream decoder does */
    if (m >= 0 && eeb_decode_body(copy, (size_t)m, &frame) == EEB_FRAME) check_accepted(&frame);
    free(copy);
}

#ifdef EEB_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_input(data, size);
    return 0;
}
#else

static uint64_t rng_state;

static uint32_t rnd(void) { /* xorshift64*, deterministic for a given seed */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 32);
}

static uint32_t below(uint32_t n) { return rnd() % n; }

static void random_text(char *dst, size_t min_len, size_t max_len) {
    size_t n = min_len + below((uint32_t)(max_len - min_len + 1u)), i;
    for (i = 0; i < n; i++) {
        char c = (char)(0x21 + below(0x7E - 0x21 + 1));
        dst[i] = c == ',' ? '_' : c;
    }
    dst[n] = '\0';
}

static void random_frame(eeb_frame *f) {
    unsigned i;
    memset(f, 0, sizeof *f);
    f->seq = (uint16_t)rnd();
    if (below(4) != 0u) {
        eeb_update *u = &f->msg.update;
        f->type = EEB_MSG_UPDATE;
        u->timestamp_ms = rnd();
        u->speech = (uint8_t)below(2);
        u->n_emotions = (uint8_t)(1u + below(EEB_MAX_EMOTIONS));
        u->dominant = below(3) == 0u ? EEB_NO_DOMINANT : (uint8_t)below(u->n_emotions);
        for (i = 0; i < u->n_emotions; i++) u->levels[i] = (uint8_t)rnd();
    } else {
        eeb_hello *h = &f->msg.hello;
        f->type = EEB_MSG_HELLO;
        h->update_rate_centihz = (uint16_t)rnd();
        random_text(h->model_version, 0, below(4) ? 16u : EEB_MAX_MODEL_VERSION);
        h->n_emotions = (uint8_t)(1u + below(below(4) ? 8u : EEB_MAX_EMOTIONS));
        for (i = 0; i < h->n_emotions; i++) random_text(h->emotions[i], 1, below(2) ? 9u : EEB_MAX_NAME);
    }
}

/* A frame body with a correct CRC but arbitrary contents: reaches the parsers behind the CRC check. */
static size_t random_checked_body(uint8_t *body) {
    size_t len = EEB_HEADER_SIZE + below(EEB_MAX_PAYLOAD + 1u), i;
    uint16_t crc;
    for (i = 0; i < len; i++) body[i] = (uint8_t)(below(3) ? below(24) : rnd());
    if (below(4)) body[0] = (uint8_t)(0x10u | below(16));
    if (below(4)) body[1] = (uint8_t)(1u + below(2));
    if (below(4)) body[4] = (uint8_t)(len - EEB_HEADER_SIZE);
    crc = eeb_crc16(body, len);
    body[len] = (uint8_t)(crc & 0xFFu);
    body[len + 1u] = (uint8_t)(crc >> 8);
    return len + EEB_CRC_SIZE;
}

static size_t mutate(uint8_t *buf, size_t len, size_t cap) {
    unsigned k, rounds = 1u + below(4);
    size_t at;
    for (k = 0; k < rounds && len > 0u; k++) {
        at = below((uint32_t)len);
        switch (below(5)) {
        case 0: buf[at] ^= (uint8_t)(1u << below(8)); break;
        case 1: buf[at] = below(2) ? 0u : (uint8_t)rnd(); break;
        case 2:
            if (len < cap) {
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = (uint8_t)rnd();
                len++;
            }
            break;
        case 3:
            memmove(buf + at, buf + at + 1, len - at - 1u);
            len--;
            break;
        default: len = at; break;
        }
    }
    return len;
}

int main(int argc, char **argv) {
    static uint8_t buf[4 * EEB_MAX_WIRE], body[EEB_MAX_BODY], stuffed[EEB_MAX_WIRE];
    unsigned long iterations, it, accepted_bodies = 0, rejected_flips = 0;
    eeb_frame f, g;
    size_t len, n, i;
    if (argc != 3) {
        fprintf(stderr, "usage: %s SEED ITERATIONS\n", argv[0]);
        return 2;
    }
    rng_state = strtoull(argv[1], NULL, 10) * 0x9E3779B97F4A7C15ULL + 1u;
    iterations = strtoul(argv[2], NULL, 10);
    for (it = 0; it < iterations; it++) {
        switch (it % 4u) {
        case 0: /* noise, with plenty of delimiters */
            len = below(600);
            for (i = 0; i < len; i++) buf[i] = below(8) ? (uint8_t)rnd() : 0u;
            break;
        case 1: /* a few valid frames, then damaged */
            len = 0;
            for (n = 1u + below(4); n > 0u; n--) {
                random_frame(&f);
                len += eeb_encode_wire(&f, buf + len, sizeof buf - len);
            }
            len = mutate(buf, len, sizeof buf);
            break;
        case 2: /* 1..3 flipped bits in a valid body must never pass */
            random_frame(&f);
            n = eeb_encode_body(&f, body, sizeof body);
            require(n > 0u && eeb_decode_body(body, n, &g) == EEB_FRAME && same_message(&f, &g), "round trip");
            memcpy(stuffed, body, n);
            for (i = 1u + below(3); i > 0u; i--) {
                size_t bit = below((uint32_t)(8u * n));
                body[bit / 8u] ^= (uint8_t)(1u << (bit % 8u));
            }
            if (memcmp(stuffed, body, n) != 0) { /* two flips of one bit cancel */
                require(eeb_decode_body(body, n, &g) == EEB_ERR_CRC, "bit flips detected by the CRC");
                rejected_flips++;
            }
            len = eeb_cobs_encode(body, n, buf, sizeof buf);
            break;
        default: /* a correct CRC around arbitrary contents */
            n = random_checked_body(body);
            if (eeb_decode_body(body, n, &g) == EEB_FRAME) accepted_bodies++;
            len = eeb_cobs_encode(body, n, stuffed, sizeof stuffed);
            memcpy(buf, stuffed, len);
            buf[len++] = 0u;
            if (below(2)) len = mutate(buf, len, sizeof buf);
            break;
        }
        check_input(buf, len);
    }
    printf("fuzz_bridge ok: %lu inputs, %lu flipped bodies rejected, %lu random checked bodies accepted\n",
           iterations, rejected_flips, accepted_bodies);
    return 0;
}
#endif
