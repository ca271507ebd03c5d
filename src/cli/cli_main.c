/* cli_main.c: the wquant command-line driver (subcommand dispatch). Layer: cli. */
#include <stdio.h>
#include <string.h>

#include "wq_version.h"

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("wquant %s\n", WQ_VERSION_STRING);
        return 0;
    }
    fprintf(stderr, "usage: wquant <command> ...\n");
    return 2;
}
