/* cli_args.h: a small long-option parser shared by the subcommands ("--name value", "--name=value",
 * flags). Layer: cli. */
#ifndef WQ_CLI_ARGS_H
#define WQ_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { WQ_OPT_FLAG, WQ_OPT_VALUE } wq_opt_kind;

typedef struct {
    const char *name; /* without the leading "--" */
    wq_opt_kind kind;
    const char *metavar; /* for help, e.g. "DIR" */
    const char *help;
    /* filled by the parser */
    const char *value; /* last value given, or NULL */
    int count;         /* how often it was given */
} wq_opt;

/* Parses argv[first..argc) into opts (terminated by a {NULL} entry); positional arguments are
 * collected into pos (at most max_pos). Unknown options and missing values print an error naming the
 * option and return -1; 0 on success. */
int wq_cli_parse(int argc, char **argv, int first, wq_opt *opts, const char **pos, int max_pos,
                 int *n_pos);
/* Prints "usage" then one line per option. */
void wq_cli_print_help(const char *usage, const char *summary, const wq_opt *opts);
wq_opt *wq_cli_opt(wq_opt *opts, const char *name);
/* Integer option value with range check; prints an error naming the option. */
int wq_cli_get_int(wq_opt *opts, const char *name, int64_t lo, int64_t hi, int64_t *out);

#endif
