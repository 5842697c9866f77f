/* atomic_file.c - THE atomic file replacement (see
 * include/drd/core/atomic_file.h): a temporary file next to the target,
 * owner and mode, fsync, rename, fsync of the directory. */
#include "drd/core/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "drd/core/log.h"
#include "drd/core/util.h"

static bool write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* A new file NAME.drd-tmp.XXXXXX in dirfd (O_EXCL|O_NOFOLLOW: never an
 * existing file or a link); its name in tmp. */
static int create_temp(int dirfd, const char *name, char *tmp, size_t n)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned char rnd[6];
        char suffix[7];
        if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
            return -1;
        for (size_t i = 0; i < sizeof rnd; i++)
            suffix[i] = chars[rnd[i] % (sizeof chars - 1)];
        suffix[6] = '\0';
        if ((size_t)snprintf(tmp, n, "%s.drd-tmp.%s", name, suffix) >= n) {
            errno = ENAMETOOLONG;
            return -1;
        }
        int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

/* Replace name in dirfd (a directory opened for reading, resolved path dir)
 * by data, owned and moded like `like`: temporary file, owner, mode, fsync,
 * rename, fsync of the directory.  *renamed tells whether the rename
 * happened (then only the directory's fsync can have failed). */
bool atomic_file_replace_at(int dirfd, const char *dir, const char *name, const char *data,
                            size_t len, const struct stat *like, bool *renamed, char *err,
                            size_t errlen)
{
    char tmp[NAME_MAX + 32];
    bool ok = false, created = false;
    int fd;

    *renamed = false;
    fd = create_temp(dirfd, name, tmp, sizeof tmp);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create a temporary file in %s: %s", dir, strerror(errno));
        return false;
    }
    created = true;
    if (!write_all(fd, data, len)) {
        snprintf(err, errlen, "cannot write %s/%s: %s", dir, tmp, strerror(errno));
        goto cleanup;
    }
    /* Same owner and group as the original (the app must still read it);
     * chown first, since it may clear mode bits. */
    if ((like->st_uid != geteuid() || like->st_gid != getegid()) &&
        fchown(fd, like->st_uid, like->st_gid) != 0) {
        if (errno == EPERM && like->st_uid == geteuid()) {
            log_warn("cannot keep group %d of %s/%s: %s", (int)like->st_gid, dir, name,
                     strerror(errno));
        } else {
            snprintf(err, errlen, "cannot give %s/%s owner %d:%d: %s", dir, name,
                     (int)like->st_uid, (int)like->st_gid, strerror(errno));
            goto cleanup;
        }
    }
    if (fchmod(fd, like->st_mode & 07777) != 0) {
        snprintf(err, errlen, "cannot set the mode of %s/%s: %s", dir, tmp, strerror(errno));
        goto cleanup;
    }
    if (fsync(fd) != 0) {
        snprintf(err, errlen, "cannot fsync %s/%s: %s", dir, tmp, strerror(errno));
        goto cleanup;
    }
    int rc = close(fd);
    fd = -1;
    if (rc != 0) {
        snprintf(err, errlen, "cannot write %s/%s: %s", dir, tmp, strerror(errno));
        goto cleanup;
    }
    if (renameat(dirfd, tmp, dirfd, name) != 0) {
        snprintf(err, errlen, "cannot replace %s/%s: %s", dir, name, strerror(errno));
        goto cleanup;
    }
    created = false;
    *renamed = true;
    if (fsync(dirfd) != 0) {
        /* Replaced but maybe not durable: report it, the caller retries. */
        snprintf(err, errlen, "%s/%s replaced, but fsync of %s failed: %s", dir, name, dir,
                 strerror(errno));
        goto cleanup;
    }
    ok = true;
cleanup:
    if (fd >= 0)
        close(fd);
    if (created)
        unlinkat(dirfd, tmp, 0);
    return ok;
}

bool write_file_atomic(const char *path, const void *data, size_t len,
                       mode_t mode, char *err, size_t errlen)
{
    char dir[PATH_MAX], base[PATH_MAX];
    struct stat like = { .st_mode = mode, .st_uid = geteuid(), .st_gid = getegid() };
    bool renamed = false, ok;
    const char *d;
    int dirfd;

    if (str_copy(dir, path, sizeof dir) >= sizeof dir || str_copy(base, path, sizeof base) >= sizeof base) {
        snprintf(err, errlen, "%s: path too long", path);
        return false;
    }
    d = dirname(dir);   /* may be a static "." */
    dirfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        snprintf(err, errlen, "cannot open the directory of %s: %s", path, strerror(errno));
        return false;
    }
    ok = atomic_file_replace_at(dirfd, d, basename(base), data, len, &like, &renamed, err, errlen);
    close(dirfd);
    return ok;
}
