/* fuzz_http.c - the HTTP front: raw bytes to the real server (api.c on
 * libmicrohttpd) in this process. The first byte picks the listener ('t':
 * TCP with its token and sessions, anything else: the unix socket), the
 * rest is sent as is. Every reply is HTTP, its JSON bodies are JSON, and
 * over TCP nothing is queued for the main loop unless the input carries
 * the token (a session needs a login, which needs the token too). */
#include "fuzz_api.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_api_start();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    size_t reply_len;
    char *reply;
    bool tcp;
    command *c;

    if (len < 1)
        return 0;
    tcp = data[0] == 't';
    reply = fuzz_api_send_raw(tcp, data + 1, len - 1, &reply_len);
    /* libmicrohttpd skips empty lines before a request line */
    size_t at = 1;
    while (at < len && (data[at] == '\r' || data[at] == '\n'))
        at++;
    bool head = len - at >= 5 && memcmp(data + at, "HEAD ", 5) == 0;
    fuzz_api_check_reply(reply, reply_len, head, NULL);
    c = command_queue_pop(api_commands(fuzz_api));
    if (c != NULL && tcp && memmem(data, len, FUZZ_TOKEN, strlen(FUZZ_TOKEN)) == NULL)
        fuzz_fail("a command (kind %d) was queued over TCP without the token", (int)c->kind);
    command_free(c);
    fuzz_api_drain();
    free(reply);
    return 0;
}
