/* fuzz_replay.c: a plain main() for any harness (fuzz_*.c), so the saved findings in
 * fuzz/regressions/<harness>/ replay under gcc as ctests (tests/fuzz_regress.cmake) without
 * libFuzzer. Arguments are files or directories (one level; dot files skipped). Exit 0 when every
 * input ran; a crash or abort is the failure. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz_replay: cannot open %s\n", path);
        return 1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        uint8_t *g = realloc(buf, cap * 2);
        if (!g) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = g;
        cap *= 2;
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "fuzz_replay: out of memory reading %s\n", path);
        return 1;
    }
    fprintf(stderr, "fuzz_replay: %s (%zu bytes)\n", path, n);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    int bad = 0, ran = 0;
    for (int a = 1; a < argc; a++) {
        struct stat sb;
        if (stat(argv[a], &sb) != 0) {
            fprintf(stderr, "fuzz_replay: no such file or directory: %s\n", argv[a]);
            bad = 1;
            continue;
        }
        if (!S_ISDIR(sb.st_mode)) {
            bad |= run_file(argv[a]);
            ran++;
            continue;
        }
        DIR *d = opendir(argv[a]);
        if (!d) {
            bad = 1;
            continue;
        }
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            char **g = realloc(names, (n + 1) * sizeof *names);
            if (!g) break;
            names = g;
            names[n] = malloc(strlen(argv[a]) + strlen(de->d_name) + 2);
            if (!names[n]) break;
            sprintf(names[n], "%s/%s", argv[a], de->d_name);
            n++;
        }
        closedir(d);
        qsort(names, n, sizeof *names, cmp_str);
        for (size_t i = 0; i < n; i++) {
            bad |= run_file(names[i]);
            ran++;
            free(names[i]);
        }
        free(names);
    }
    fprintf(stderr, "fuzz_replay: %d input(s), %s\n", ran, bad ? "errors" : "ok");
    return bad;
}
