/* fuzz_config.c: libFuzzer harness for the configuration parser. The input is JSON text (NUL-
 * terminated here); an accepted config must serialise with wq_config_to_json, reparse, and
 * serialise to the same text again (the container stores that text and readers reparse it). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_alloc.h"
#include "core/core_config.h"
#include "fuzz_util.h"

static const char *const k_layers[] = {"model.layers.0.self_attn.q_proj", "lm_head",
                                       "model.layers.11.mlp.down_proj", ""};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wq_fuzz_quiet();
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    wq_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (wq_config_parse(text, "fuzz", &cfg) != WQ_OK) {
        free(text);
        return 0;
    }
    for (size_t i = 0; i < sizeof k_layers / sizeof *k_layers; i++) {
        wq_qspec spec;
        wq_config_resolve(&cfg, k_layers[i], "Linear", &spec);
        char *lj = wq_config_layer_json(&cfg, &spec);
        WQ_FUZZ_CHECK(lj != NULL);
        wq_free(lj);
    }
    char *json = wq_config_to_json(&cfg);
    WQ_FUZZ_CHECK(json != NULL);
    wq_config again;
    memset(&again, 0, sizeof again);
    WQ_FUZZ_CHECK(wq_config_parse(json, "fuzz:to_json", &again) == WQ_OK);
    char *json2 = wq_config_to_json(&again);
    WQ_FUZZ_CHECK(json2 != NULL && strcmp(json, json2) == 0);
    WQ_FUZZ_CHECK(wq_config_validate(&again) == WQ_OK);
    wq_free(json2);
    wq_free(json);
    wq_config_free(&again);
    wq_config_free(&cfg);
    wq_config_free(&cfg); /* documented: free twice is harmless */
    free(text);
    return 0;
}
