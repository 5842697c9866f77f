/* atomic_file.h - THE atomic file replacement: a reader sees the old file
 * or the new one, never a part, and after success the new one survives a
 * crash. */
#ifndef DRD_CORE_ATOMIC_FILE_H
#define DRD_CORE_ATOMIC_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Replace name in dirfd (a directory opened for reading, resolved path dir,
 * for messages) by data, owned and moded like `like` (st_uid, st_gid,
 * st_mode): temporary file NAME.drd-tmp.XXXXXX (O_EXCL|O_NOFOLLOW), owner,
 * mode, fsync, rename, fsync of the directory. *renamed tells whether the
 * rename happened (then only the directory's fsync can have failed). */
bool atomic_file_replace_at(int dirfd, const char *dir, const char *name, const char *data,
                            size_t len, const struct stat *like, bool *renamed, char *err,
                            size_t errlen);
/* The same for a path, owned by us, with mode. */
bool write_file_atomic(const char *path, const void *data, size_t len,
                       mode_t mode, char *err, size_t errlen);

#endif
