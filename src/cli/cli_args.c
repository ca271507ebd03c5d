/* cli_args.c: long-option parsing for the subcommands. Layer: cli. */
#include "cli/cli_args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

wq_opt *wq_cli_opt(wq_opt *opts, const char *name)
{
    for (wq_opt *o = opts; o->name; o++)
        if (strcmp(o->name, name) == 0) return o;
    return NULL;
}

int wq_cli_parse(int argc, char **argv, int first, wq_opt *opts, const char **pos, int max_pos,
                 int *n_pos)
{
    *n_pos = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (*n_pos >= max_pos) {
                fprintf(stderr, "wquant: unexpected argument '%s'\n", a);
                return -1;
            }
            pos[(*n_pos)++] = a;
            continue;
        }
        char name[64];
        const char *eq = strchr(a + 2, '=');
        size_t len = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (len >= sizeof name) len = sizeof name - 1;
        memcpy(name, a + 2, len);
        name[len] = '\0';
        wq_opt *o = wq_cli_opt(opts, name);
        if (!o) {
            fprintf(stderr, "wquant: unknown option '--%s' (see --help)\n", name);
            return -1;
        }
        o->count++;
        if (o->kind == WQ_OPT_FLAG) {
            if (eq) {
                fprintf(stderr, "wquant: option '--%s' takes no value\n", name);
                return -1;
            }
            continue;
        }
        if (eq) {
            o->value = eq + 1;
        } else if (i + 1 < argc) {
            o->value = argv[++i];
        } else {
            fprintf(stderr, "wquant: option '--%s' needs a value (%s)\n", name,
                    o->metavar ? o->metavar : "VALUE");
            return -1;
        }
    }
    return 0;
}

void wq_cli_print_help(const char *usage, const char *summary, const wq_opt *opts)
{
    printf("usage: %s\n\n%s\n\noptions:\n", usage, summary);
    for (const wq_opt *o = opts; o->name; o++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->kind == WQ_OPT_VALUE ? " " : "",
                 o->kind == WQ_OPT_VALUE ? (o->metavar ? o->metavar : "VALUE") : "");
        printf("  %-26s %s\n", left, o->help);
    }
}

int wq_cli_get_int(wq_opt *opts, const char *name, int64_t lo, int64_t hi, int64_t *out)
{
    wq_opt *o = wq_cli_opt(opts, name);
    if (!o || !o->value) return 0;
    char *end;
    errno = 0;
    long long v = strtoll(o->value, &end, 10);
    if (errno || *end || end == o->value || v < lo || v > hi) {
        fprintf(stderr, "wquant: option '--%s' must be an integer in [%lld, %lld] (got '%s')\n", name,
                (long long)lo, (long long)hi, o->value);
        return -1;
    }
    *out = v;
    return 0;
}
