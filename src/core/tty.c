/* tty.c - text from elsewhere made safe to print on a terminal (tty.h). */
#include "drd/core/tty.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 character at s (1..4), or 0 if the bytes at s
 * are not one (RFC 3629: no overlong form, no surrogate, at most U+10FFFF). */
static size_t utf8_char_len(const unsigned char *s)
{
    unsigned char c = s[0];

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80 ? 4 : 0;
    }
    return 0;                           /* a continuation byte, 0xc0, 0xc1, 0xf5.. */
}

/* The replacement for the character of len bytes at s (into rep), or
 * false if it is printed as it is. */
static bool replacement(const unsigned char *s, size_t len, bool multiline, char rep[8])
{
    if (len == 0) {
        snprintf(rep, 8, "\\x%02x", s[0]);
        return true;
    }
    if (len == 1 && (s[0] < 0x20 || s[0] == 0x7f)) {
        if (multiline && (s[0] == '\n' || s[0] == '\t'))
            return false;
        snprintf(rep, 8, "\\x%02x", s[0]);
        return true;
    }
    if (len == 2 && s[0] == 0xc2 && s[1] <= 0x9f) {      /* U+0080..U+009F */
        snprintf(rep, 8, "\\u%04x", (unsigned)s[1]);
        return true;
    }
    /* Bidirectional formatting (U+200E, U+200F, U+202A..U+202E,
     * U+2066..U+2069): they reorder what follows on the line. */
    if (len == 3 && s[0] == 0xe2 &&
        ((s[1] == 0x80 && (s[2] == 0x8e || s[2] == 0x8f || (s[2] >= 0xaa && s[2] <= 0xae))) ||
         (s[1] == 0x81 && s[2] >= 0xa6 && s[2] <= 0xa9))) {
        unsigned cp = ((s[0] & 0x0fu) << 12) | ((s[1] & 0x3fu) << 6) | (s[2] & 0x3fu);
        snprintf(rep, 8, "\\u%04x", cp);
        return true;
    }
    return false;
}

bool tty_clean(const char *in, bool multiline, char *out, size_t n)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0;

    if (n == 0)
        return false;
    while (*s != '\0') {
        size_t len = utf8_char_len(s);
        char rep[8];
        const char *piece = (const char *)s;
        size_t plen = len;
        if (replacement(s, len, multiline, rep)) {
            piece = rep;
            plen = strlen(rep);
        }
        if (o + plen >= n) {
            out[o] = '\0';
            return false;
        }
        memcpy(out + o, piece, plen);
        o += plen;
        s += len != 0 ? len : 1;
    }
    out[o] = '\0';
    return true;
}

bool tty_is_clean(const char *in, bool multiline)
{
    const unsigned char *s = (const unsigned char *)in;

    while (*s != '\0') {
        size_t len = utf8_char_len(s);
        char rep[8];
        if (replacement(s, len, multiline, rep))
            return false;
        s += len;
    }
    return true;
}

char *tty_clean_dup(const char *in, bool multiline)
{
    /* At most 4 characters per byte ("\xHH"; "\u00HH" replaces 2 bytes). */
    size_t n = strlen(in) * 4 + 1;
    char *out = malloc(n);

    if (out != NULL)
        tty_clean(in, multiline, out, n);
    return out;
}
