/* mask.h - secrets out of every text drd stores, sends or prints: the one
 * masking module. Secrets are found by parsing the forms they take, not by
 * patterns over words:
 *   - URLs: scheme://user:PASSWORD@host, the password running to the LAST
 *     '@' before the host (a password may hold '?', '#', spaces, quotes);
 *   - key=value assignments whose key contains PASSWORD, PASSWD, TOKEN,
 *     SECRET or APIKEY/API_KEY (any case: conninfo password=, PGPASSWORD=,
 *     DB_PASSWORD=, ?token=, --password=), the value bare, 'single' or
 *     "double" quoted (backslash escapes); "key": "value" in JSON;
 *   - -u / --user / --proxy-user USER:PASSWORD (curl);
 *   - Authorization: SCHEME CREDENTIALS (and Bearer TOKEN);
 *   - every registered literal secret (passwords, tokens, webhook URLs):
 *     8 bytes or more anywhere, 4 to 7 bytes as a whole word (not inside a
 *     longer one), shorter ones only where one of the forms above holds them.
 * Each secret becomes "****". Ordinary words are left alone ("started by
 * token: reason" keeps the reason). Masking is idempotent. Thread-safe. */
#ifndef DRD_MASK_H
#define DRD_MASK_H

#include <stdarg.h>
#include <stddef.h>

/* Register a literal secret (copied; any length >= 1, no fixed limit;
 * registering the same one again is a no-op). */
void mask_add_secret(const char *secret);
/* Register every secret value the parser finds in text: a URL's password
 * (as written and percent-decoded), password=..., and so on. For
 * configured URLs and conninfo strings: the URL itself stays readable. */
void mask_add_secrets_in(const char *text);
/* Forget every registered secret. */
void mask_clear_secrets(void);
/* The masked text, malloc'd (it may be longer than in); NULL only on OOM. */
char *mask_dup(const char *in);
/* Mask in, then cut the result to fit out (size n) on a UTF-8 boundary.
 * Always NUL-terminated; on OOM out is "****". Returns out. */
char *mask_secrets(const char *in, char *out, size_t n);
/* Format (unbounded), mask, then cut to fit out (size n) on a UTF-8
 * boundary, ending with marker when cut (NULL: none): a secret is never
 * cut before it could be recognised. Returns out. */
char *mask_vformat(char *out, size_t n, const char *marker, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

#endif
