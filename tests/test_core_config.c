/* test_core_config.c: config parsing, validation messages, rule resolution, fp16/bf16 conversion. */
#include <math.h>
#include <string.h>

#include "core/core_config.h"
#include "core/core_alloc.h"
#include "core/core_half.h"
#include "core/core_log.h"
#include "wq_testutil.h"

static void config_should_parse_inc_dict_form(void **state)
{
    (void)state;
    const char *js = "{\"gptq\": {\"global\": {\"dtype\": \"int\", \"bits\": 3, \"group_size\": 128,"
                     " \"use_sym\": false, \"act_order\": true, \"percdamp\": 0.05},"
                     " \"local\": {\"lm_head\": {\"dtype\": \"fp32\"}, \"re:.*down_proj\": {\"bits\": 8}}},"
                     " \"calibration\": {\"text\": \"x.txt\", \"n_samples\": 16, \"seqlen\": 64, \"seed\": 7}}";
    wq_config c;
    assert_int_equal(wq_config_parse(js, "t.json", &c), WQ_OK);
    assert_int_equal(c.algo, WQ_ALGO_GPTQ);
    assert_int_equal(c.global.bits, 3);
    assert_int_equal(c.global.group_size, 128);
    assert_false(c.global.sym);
    assert_true(c.ap.act_order);
    assert_true(fabs(c.ap.percdamp - 0.05) < 1e-12);
    assert_int_equal(c.calib.n_samples, 16);
    assert_int_equal(c.calib.seqlen, 64);
    assert_int_equal(c.calib.seed, 7);
    wq_qspec s;
    wq_config_resolve(&c, "model.layers.3.mlp.down_proj", "Linear", &s);
    assert_int_equal(s.bits, 8);
    assert_int_equal(s.group_size, 128); /* inherited from global */
    wq_config_resolve(&c, "model.layers.3.mlp.up_proj", "Linear", &s);
    assert_int_equal(s.bits, 3);
    /* the regex is anchored to the full name */
    wq_config_resolve(&c, "model.layers.3.mlp.down_proj.extra", "Linear", &s);
    assert_int_equal(s.bits, 3);
    wq_config_resolve(&c, "lm_head", "Linear", &s);
    assert_int_equal(s.dtype, WQ_QDTYPE_FP32);
    wq_config_free(&c);
}

static void config_should_keep_lm_head_unless_quant_lm_head(void **state)
{
    (void)state;
    wq_config c;
    wq_qspec s;
    assert_int_equal(wq_config_parse("{\"rtn\": {}}", "t", &c), WQ_OK);
    wq_config_resolve(&c, "lm_head", "Linear", &s);
    assert_int_equal(s.dtype, WQ_QDTYPE_FP32);
    wq_config_resolve(&c, "model.layers.0.self_attn.q_proj", "Linear", &s);
    assert_int_equal(s.dtype, WQ_QDTYPE_INT);
    assert_int_equal(s.bits, 4);      /* INC RTN default */
    assert_int_equal(s.group_size, 32);
    assert_true(s.sym);
    wq_config_free(&c);
    assert_int_equal(wq_config_parse("{\"rtn\": {\"global\": {\"quant_lm_head\": true}}}", "t", &c),
                     WQ_OK);
    wq_config_resolve(&c, "lm_head", "Linear", &s);
    assert_int_equal(s.dtype, WQ_QDTYPE_INT);
    wq_config_free(&c);
}

static void config_should_apply_later_rules_over_earlier(void **state)
{
    (void)state;
    wq_config c;
    wq_qspec s;
    const char *js = "{\"rtn\": {\"local\": {\"Linear\": {\"bits\": 2}, \"re:.*proj\": {\"bits\": 5},"
                     " \"model.layers.0.mlp.up_proj\": {\"bits\": 6, \"dtype\": \"int\"}}}}";
    assert_int_equal(wq_config_parse(js, "t", &c), WQ_OK);
    wq_config_resolve(&c, "model.layers.0.mlp.up_proj", "Linear", &s);
    assert_int_equal(s.bits, 6);
    wq_config_resolve(&c, "model.layers.0.mlp.down_proj", "Linear", &s);
    assert_int_equal(s.bits, 5);
    wq_config_resolve(&c, "other", "Linear", &s);
    assert_int_equal(s.bits, 2);
    wq_config_free(&c);
}

/* Each bad config must fail with WQ_ERR_ARG and a message naming the key. */
static void config_should_reject_bad_input_naming_the_key(void **state)
{
    (void)state;
    static const struct {
        const char *json, *key;
    } cases[] = {
        {"{\"rtn\": {\"global\": {\"bits\": 0}}}", "bits"},
        {"{\"rtn\": {\"global\": {\"bits\": 9}}}", "bits"},
        {"{\"rtn\": {\"global\": {\"bits\": 4.5}}}", "bits"},
        {"{\"rtn\": {\"global\": {\"group_size\": 0}}}", "group_size"},
        {"{\"rtn\": {\"global\": {\"group_size\": -2}}}", "group_size"},
        {"{\"rtn\": {\"global\": {\"use_sym\": \"yes\"}}}", "use_sym"},
        {"{\"rtn\": {\"global\": {\"dtype\": \"int9\"}}}", "dtype"},
        {"{\"rtn\": {\"global\": {\"dtype\": \"nf4\", \"bits\": 3}}}", "bits"},
        {"{\"rtn\": {\"global\": {\"colour\": 1}}}", "colour"},
        {"{\"rtn\": {\"global\": {\"act_order\": true}}}", "act_order"},
        {"{\"rtn\": {\"local\": {\"re:(\": {\"bits\": 4}}}}", "re:("},
        {"{\"rtn\": {\"local\": {\"re:a+++++++++++++++++++++\": {\"bits\": 4}}}}", "too complex"},
        {"{\"rtn\": {\"local\": {\"re:((a{1,255}){1,255}){1,100}\": {\"bits\": 4}}}}",
         "too complex"},
        {"{\"rtn\": {\"local\": {\"re:.*m*****l\": {\"bits\": 4}}}}", "too complex"},
        {"{\"rtn\": {\"local\": {\"re:((((((((((((((((a*)*)*)*)*)*)*)*)*)*)*)*)*)*)*)*)*\": "
         "{\"bits\": 4}}}}",
         "too complex"},
        {"{\"rtn\": {\"local\": {\"lm_head\": {\"nbits\": 4}}}}", "nbits"},
        {"{\"rtn\": {}, \"gptq\": {}}", "gptq"},
        {"{\"foo\": {}}", "foo"},
        {"{\"rtn\": {\"global\": {}}, \"calibration\": {\"seqlen\": 1}}", "seqlen"},
        {"{\"rtn\": {\"global\": {\"double_quant_bits\": 0}}}", "double_quant_bits"},
        {"{\"rtn\": {\"global\": {\"scale_dtype\": \"bf8\"}}}", "scale_dtype"},
        {"{\"rtn\": ", "malformed"},
        {"[1,2]", "object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wq_config c;
        wq_log_set_level(WQ_LOG_LVL_ERROR);
        wq_log_clear_error();
        wq_status st = wq_config_parse(cases[i].json, "bad.json", &c);
        if (st != WQ_ERR_ARG) print_error("case %zu: %s accepted (status %d)\n", i, cases[i].json, st);
        assert_int_equal(st, WQ_ERR_ARG);
        const char *msg = wq_log_last_error();
        if (!strstr(msg, cases[i].key) || !strstr(msg, "bad.json"))
            print_error("case %zu: message '%s' lacks '%s'\n", i, msg, cases[i].key);
        assert_non_null(strstr(msg, cases[i].key));
        assert_non_null(strstr(msg, "bad.json"));
    }
}

static void config_should_apply_cli_overrides_and_roundtrip_json(void **state)
{
    (void)state;
    wq_config c, c2;
    assert_int_equal(wq_config_parse("{\"rtn\": {\"local\": {\"re:.*down_proj\": {\"bits\": 8}}}}",
                                     "t", &c), WQ_OK);
    assert_int_equal(wq_config_set(&c, "bits", "3"), WQ_OK);
    assert_int_equal(wq_config_set(&c, "use_sym", "false"), WQ_OK);
    assert_int_equal(wq_config_set(&c, "dtype", "nf4"), WQ_OK);
    assert_int_equal(wq_config_set(&c, "dtype", "int"), WQ_OK);
    assert_int_equal(wq_config_set(&c, "bits", "3"), WQ_OK);
    assert_int_equal(wq_config_set(&c, "group_size", "-1"), WQ_OK);
    assert_int_equal(wq_config_set(&c, "bits", "12"), WQ_ERR_ARG);
    assert_int_equal(wq_config_set(&c, "percdamp", "0.1"), WQ_ERR_ARG); /* not an RTN key */
    wq_qspec s;
    wq_config_resolve(&c, "model.layers.0.mlp.down_proj", "Linear", &s);
    assert_int_equal(s.bits, 8); /* the rule still wins for the field it sets */
    assert_int_equal(s.group_size, -1);
    char *js = wq_config_to_json(&c);
    assert_non_null(js);
    assert_int_equal(wq_config_parse(js, "roundtrip", &c2), WQ_OK);
    assert_int_equal(c2.global.bits, 3);
    assert_false(c2.global.sym);
    assert_int_equal(c2.global.group_size, -1);
    wq_config_resolve(&c2, "model.layers.0.mlp.down_proj", "Linear", &s);
    assert_int_equal(s.bits, 8);
    wq_free(js);
    wq_config_free(&c);
    wq_config_free(&c2);
}

/* Hand-derived fp16/bf16 cases: exact values, ties to even, subnormals, overflow. */
static void half_should_round_to_nearest_even(void **state)
{
    (void)state;
    assert_int_equal(wq_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(wq_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(wq_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(wq_f32_to_f16(65520.0f), 0x7c00);          /* rounds up to inf */
    assert_int_equal(wq_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);   /* tie -> even (down) */
    assert_int_equal(wq_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02); /* tie -> even (up) */
    assert_int_equal(wq_f32_to_f16(0x1p-24f), 0x0001);         /* smallest subnormal */
    assert_int_equal(wq_f32_to_f16(0x1p-25f), 0x0000);         /* tie -> even zero */
    assert_int_equal(wq_f32_to_f16(3 * 0x1p-25f), 0x0002);     /* 1.5 ulp -> 2 */
    assert_true(wq_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(wq_f16_to_f32(0x3555) == 0x1.554p-2f);
    assert_true(isnan(wq_f16_to_f32(wq_f32_to_f16(NAN))));
    for (uint32_t h = 0; h < 0x7c00; h++) /* every finite positive half round-trips */
        assert_int_equal(wq_f32_to_f16(wq_f16_to_f32((uint16_t)h)), h);
    assert_int_equal(wq_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(wq_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);     /* tie -> even */
    assert_int_equal(wq_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
    assert_true(wq_bf16_to_f32(0xbf80) == -1.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config_should_parse_inc_dict_form),
        cmocka_unit_test(config_should_keep_lm_head_unless_quant_lm_head),
        cmocka_unit_test(config_should_apply_later_rules_over_earlier),
        cmocka_unit_test(config_should_reject_bad_input_naming_the_key),
        cmocka_unit_test(config_should_apply_cli_overrides_and_roundtrip_json),
        cmocka_unit_test(half_should_round_to_nearest_even),
    };
    return cmocka_run_group_tests_name("core_config", tests, NULL, NULL);
}
