/* core_sweep.c: sweep file parsing, axis enumeration and per-point configs (core_sweep.h).
 * Points are built on the JSON level (base config + calibration + algorithm_params + axis values)
 * and then validated by the config parser, so every key the config accepts can be an axis and
 * every error message names the key. Layer: core. */
#include "core/core_sweep.h"

#include <cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_alloc.h"
#include "core/core_log.h"

struct wq_sweep {
    char origin[512];
    cJSON *root;          /* the sweep file */
    cJSON *base;          /* the base config (owned copy) or NULL until set */
    char base_path[1024]; /* "" when inline */
    char model[1024], out[1024];
    int64_t stages;
    const cJSON *calib, *algo_params; /* into root, may be NULL */
    int n_axes;
    const cJSON *axis[WQ_SWEEP_MAX_AXES]; /* the value arrays, into root; ->string is the key */
    int axis_n[WQ_SWEEP_MAX_AXES];
    int64_t count;
    int n_evals;
    wq_sweep_eval evals[WQ_SWEEP_MAX_EVALS];
};

static int algo_of(const char *name)
{
    for (int a = 0; a < WQ_ALGO_COUNT; a++)
        if (strcmp(name, wq_algo_name((wq_algo)a)) == 0) return a;
    return -1;
}

static int is_algo_axis(const char *key)
{
    return strcmp(key, "algorithm") == 0 || strcmp(key, "algo") == 0;
}

static wq_status parse_string(const cJSON *v, const char *origin, const char *key, char *dst,
                              size_t n)
{
    if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) >= n) {
        WQ_LOG_ERROR("%s: key '%s' must be a non-empty string of at most %zu characters", origin,
                     key, n - 1);
        return WQ_ERR_ARG;
    }
    snprintf(dst, n, "%s", v->valuestring);
    return WQ_OK;
}

static wq_status parse_int(const cJSON *v, const char *origin, const char *key, int64_t lo,
                           int64_t hi, int64_t *dst)
{
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < (double)lo || v->valuedouble > (double)hi) {
        WQ_LOG_ERROR("%s: key '%s' must be an integer in [%lld, %lld]", origin, key, (long long)lo,
                     (long long)hi);
        return WQ_ERR_ARG;
    }
    *dst = (int64_t)v->valuedouble;
    return WQ_OK;
}

/* "A:B" / "A:" or [A, B] -> [begin, end) with end -1 for "to the end". */
static wq_status parse_range(const cJSON *v, const char *where, int64_t *a, int64_t *b)
{
    char *end;
    if (cJSON_IsString(v)) {
        *a = strtoll(v->valuestring, &end, 10);
        if (end != v->valuestring && *end == ':' && *a >= 0) {
            const char *t = end + 1;
            *b = *t ? strtoll(t, &end, 10) : -1;
            if ((!*t || !*end) && (*b == -1 || *b > *a)) return WQ_OK;
        }
    } else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2) {
        const cJSON *x = cJSON_GetArrayItem(v, 0), *y = cJSON_GetArrayItem(v, 1);
        if (cJSON_IsNumber(x) && cJSON_IsNumber(y) && x->valuedouble >= 0 &&
            x->valuedouble == floor(x->valuedouble) && y->valuedouble == floor(y->valuedouble) &&
            (y->valuedouble == -1 || y->valuedouble > x->valuedouble)) {
            *a = (int64_t)x->valuedouble;
            *b = (int64_t)y->valuedouble;
            return WQ_OK;
        }
    }
    WQ_LOG_ERROR("%s: key 'range' must be \"A:B\" or [A, B] with 0 <= A < B (B = -1: to the end)",
                 where);
    return WQ_ERR_ARG;
}

static wq_status parse_eval(const cJSON *o, const char *origin, int i, wq_sweep_eval *e)
{
    char where[700];
    snprintf(where, sizeof where, "%s: \"eval\"[%d]", origin, i);
    if (!cJSON_IsObject(o)) {
        WQ_LOG_ERROR("%s must be an object {\"text\": FILE, ...}", where);
        return WQ_ERR_ARG;
    }
    memset(e, 0, sizeof *e);
    snprintf(e->protocol, sizeof e->protocol, "stories");
    e->range_end = -1;
    e->seqlen = 512;
    e->windows = 40;
    const cJSON *it;
    cJSON_ArrayForEach(it, o)
    {
        const char *k = it->string;
        if (strcmp(k, "name") == 0) {
            WQ_TRY(parse_string(it, where, k, e->name, sizeof e->name));
        } else if (strcmp(k, "text") == 0) {
            WQ_TRY(parse_string(it, where, k, e->text, sizeof e->text));
        } else if (strcmp(k, "protocol") == 0) {
            WQ_TRY(parse_string(it, where, k, e->protocol, sizeof e->protocol));
            if (strcmp(e->protocol, "stories") != 0 && strcmp(e->protocol, "windows") != 0) {
                WQ_LOG_ERROR("%s: key 'protocol' must be \"stories\" or \"windows\"", where);
                return WQ_ERR_ARG;
            }
        } else if (strcmp(k, "range") == 0) {
            WQ_TRY(parse_range(it, where, &e->range_begin, &e->range_end));
        } else if (strcmp(k, "seqlen") == 0) {
            WQ_TRY(parse_int(it, where, k, 2, 1 << 30, &e->seqlen));
        } else if (strcmp(k, "windows") == 0) {
            WQ_TRY(parse_int(it, where, k, 0, 1 << 30, &e->windows));
        } else {
            WQ_LOG_ERROR(
                "%s: unknown key '%s'; allowed: name, text, protocol, range, seqlen, windows",
                where, k);
            return WQ_ERR_ARG;
        }
    }
    if (!e->text[0]) {
        WQ_LOG_ERROR("%s: key 'text' (the evaluation text file) is required", where);
        return WQ_ERR_ARG;
    }
    if (!e->name[0]) { /* base name without extension */
        const char *b = strrchr(e->text, '/');
        snprintf(e->name, sizeof e->name, "%.63s", b ? b + 1 : e->text);
        char *dot = strrchr(e->name, '.');
        if (dot && dot != e->name) *dot = '\0';
    }
    for (char *p = e->name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.') *p = '_';
    return WQ_OK;
}

static wq_status check_base(const cJSON *base, const char *origin)
{
    int n_algo = 0;
    const cJSON *it;
    if (!cJSON_IsObject(base)) {
        WQ_LOG_ERROR("%s: the base config must be a JSON object {\"<algorithm>\": {...}}", origin);
        return WQ_ERR_ARG;
    }
    cJSON_ArrayForEach(it, base) n_algo += algo_of(it->string) >= 0;
    if (n_algo != 1) {
        WQ_LOG_ERROR("%s: the base config must have exactly one algorithm section (has %d)", origin,
                     n_algo);
        return WQ_ERR_ARG;
    }
    return WQ_OK;
}

static wq_status parse_axes(wq_sweep *s, const cJSON *axes)
{
    if (!cJSON_IsObject(axes)) {
        WQ_LOG_ERROR("%s: \"axes\" must be an object {\"key\": [values...], ...}", s->origin);
        return WQ_ERR_ARG;
    }
    const cJSON *ax;
    s->count = 1;
    cJSON_ArrayForEach(ax, axes)
    {
        const char *k = ax->string;
        if (s->n_axes == WQ_SWEEP_MAX_AXES) {
            WQ_LOG_ERROR("%s: more than %d axes", s->origin, WQ_SWEEP_MAX_AXES);
            return WQ_ERR_ARG;
        }
        for (int j = 0; j < s->n_axes; j++)
            if (strcmp(s->axis[j]->string, k) == 0 ||
                (is_algo_axis(k) && is_algo_axis(s->axis[j]->string))) {
                WQ_LOG_ERROR("%s: axis '%s' is given twice", s->origin, k);
                return WQ_ERR_ARG;
            }
        int n = cJSON_IsArray(ax) ? cJSON_GetArraySize(ax) : 0;
        if (n < 1 || strlen(k) >= 100 || !k[0]) {
            WQ_LOG_ERROR("%s: axis '%s' must be a non-empty list of values", s->origin, k);
            return WQ_ERR_ARG;
        }
        for (int i = 0; i < n; i++) {
            const cJSON *v = cJSON_GetArrayItem(ax, i);
            if (!cJSON_IsString(v) && !cJSON_IsNumber(v) && !cJSON_IsBool(v)) {
                WQ_LOG_ERROR("%s: axis '%s' value %d must be a string, number or boolean",
                             s->origin, k, i);
                return WQ_ERR_ARG;
            }
            if (is_algo_axis(k) && (!cJSON_IsString(v) || algo_of(v->valuestring) < 0)) {
                WQ_LOG_ERROR("%s: axis '%s' value %d is not an algorithm; allowed: rtn, gptq, awq, "
                             "teq, hqq, autoround",
                             s->origin, k, i);
                return WQ_ERR_ARG;
            }
            if (cJSON_IsString(v) && strlen(v->valuestring) >= 60) {
                WQ_LOG_ERROR("%s: axis '%s' value %d is longer than 59 characters", s->origin, k,
                             i);
                return WQ_ERR_ARG;
            }
            for (int j = 0; j < i; j++)
                if (cJSON_Compare(v, cJSON_GetArrayItem(ax, j), 1)) {
                    WQ_LOG_ERROR("%s: axis '%s' repeats value %d (same as value %d)", s->origin, k,
                                 i, j);
                    return WQ_ERR_ARG;
                }
        }
        s->axis[s->n_axes] = ax;
        s->axis_n[s->n_axes++] = n;
        s->count *= n;
        if (s->count > WQ_SWEEP_MAX_POINTS) {
            WQ_LOG_ERROR("%s: the axes give more than %d points", s->origin, WQ_SWEEP_MAX_POINTS);
            return WQ_ERR_ARG;
        }
    }
    return WQ_OK;
}

wq_status wq_sweep_parse(const char *text, const char *origin, wq_sweep **out)
{
    wq_status st = WQ_OK;
    *out = NULL;
    wq_sweep *s = wq_calloc(1, sizeof *s);
    if (!s) return WQ_ERR_NOMEM;
    snprintf(s->origin, sizeof s->origin, "%s", origin);
    s->stages = 1;
    s->count = 1;
    s->root = cJSON_Parse(text);
    WQ_CHECK_GOTO(s->root, st, WQ_ERR_ARG, done, "%s: malformed JSON near '%.20s'", origin,
                  cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "?");
    WQ_CHECK_GOTO(
        cJSON_IsObject(s->root), st, WQ_ERR_ARG, done,
        "%s: a sweep file is a JSON object {\"base\": ..., \"model\": ..., \"axes\": ...}", origin);
    const cJSON *it, *base = NULL, *evals = NULL, *axes = NULL;
    cJSON_ArrayForEach(it, s->root)
    {
        const char *k = it->string;
        if (strcmp(k, "base") == 0) {
            base = it;
        } else if (strcmp(k, "model") == 0) {
            WQ_TRY_GOTO(parse_string(it, origin, k, s->model, sizeof s->model), st, done);
        } else if (strcmp(k, "out") == 0) {
            WQ_TRY_GOTO(parse_string(it, origin, k, s->out, sizeof s->out), st, done);
        } else if (strcmp(k, "stages") == 0) {
            WQ_TRY_GOTO(parse_int(it, origin, k, 1, 1 << 20, &s->stages), st, done);
        } else if (strcmp(k, "calibration") == 0) {
            WQ_CHECK_GOTO(cJSON_IsObject(it), st, WQ_ERR_ARG, done,
                          "%s: \"calibration\" must be an object (merged into every point's)",
                          origin);
            s->calib = it;
        } else if (strcmp(k, "algorithm_params") == 0) {
            WQ_CHECK_GOTO(
                cJSON_IsObject(it), st, WQ_ERR_ARG, done,
                "%s: \"algorithm_params\" must be an object {\"<algorithm>\": {key: value}}",
                origin);
            const cJSON *a;
            cJSON_ArrayForEach(a, it)
                WQ_CHECK_GOTO(algo_of(a->string) >= 0 && cJSON_IsObject(a), st, WQ_ERR_ARG, done,
                              "%s: \"algorithm_params\": '%s' must be an algorithm name with an "
                              "object of global keys",
                              origin, a->string);
            s->algo_params = it;
        } else if (strcmp(k, "eval") == 0) {
            evals = it;
        } else if (strcmp(k, "axes") == 0) {
            axes = it;
        } else if (strcmp(k, "description") != 0) {
            WQ_CHECK_GOTO(0, st, WQ_ERR_ARG, done,
                          "%s: unknown key '%s'; allowed: base, model, out, stages, calibration, "
                          "algorithm_params, eval, axes, description",
                          origin, k);
        }
    }
    WQ_CHECK_GOTO(base, st, WQ_ERR_ARG, done,
                  "%s: key 'base' (a config object or the path of a config file) is required",
                  origin);
    WQ_CHECK_GOTO(s->model[0], st, WQ_ERR_ARG, done,
                  "%s: key 'model' (model directory) is required", origin);
    WQ_CHECK_GOTO(evals, st, WQ_ERR_ARG, done, "%s: key 'eval' ({\"text\": FILE, ...}) is required",
                  origin);
    if (cJSON_IsString(base)) {
        WQ_TRY_GOTO(parse_string(base, origin, "base", s->base_path, sizeof s->base_path), st,
                    done);
    } else {
        WQ_TRY_GOTO(check_base(base, origin), st, done);
        s->base = cJSON_Duplicate(base, 1);
        WQ_CHECK_GOTO(s->base, st, WQ_ERR_NOMEM, done, "out of memory");
    }
    if (cJSON_IsArray(evals)) {
        int n = cJSON_GetArraySize(evals);
        WQ_CHECK_GOTO(n >= 1 && n <= WQ_SWEEP_MAX_EVALS, st, WQ_ERR_ARG, done,
                      "%s: \"eval\" must list 1 to %d evaluations", origin, WQ_SWEEP_MAX_EVALS);
        for (int i = 0; i < n; i++)
            WQ_TRY_GOTO(parse_eval(cJSON_GetArrayItem(evals, i), origin, i, &s->evals[i]), st,
                        done);
        s->n_evals = n;
    } else {
        WQ_TRY_GOTO(parse_eval(evals, origin, 0, &s->evals[0]), st, done);
        s->n_evals = 1;
    }
    for (int i = 0; i < s->n_evals; i++)
        for (int j = 0; j < i; j++)
            WQ_CHECK_GOTO(strcmp(s->evals[i].name, s->evals[j].name) != 0, st, WQ_ERR_ARG, done,
                          "%s: two evaluations are named '%s' (set \"name\")", origin,
                          s->evals[i].name);
    if (axes) WQ_TRY_GOTO(parse_axes(s, axes), st, done);
done:
    if (st != WQ_OK) {
        wq_sweep_destroy(s);
        return st;
    }
    *out = s;
    return WQ_OK;
}

void wq_sweep_destroy(wq_sweep *s)
{
    if (!s) return;
    cJSON_Delete(s->root);
    cJSON_Delete(s->base);
    wq_free(s);
}

const char *wq_sweep_base_path(const wq_sweep *s)
{
    return s->base || !s->base_path[0] ? NULL : s->base_path;
}

wq_status wq_sweep_set_base(wq_sweep *s, const char *text, const char *origin)
{
    cJSON *b = cJSON_Parse(text);
    if (!b) {
        WQ_LOG_ERROR("%s: malformed JSON near '%.20s'", origin,
                     cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "?");
        return WQ_ERR_ARG;
    }
    wq_status st = check_base(b, origin);
    if (st != WQ_OK) {
        cJSON_Delete(b);
        return st;
    }
    cJSON_Delete(s->base);
    s->base = b;
    return WQ_OK;
}

int64_t wq_sweep_count(const wq_sweep *s)
{
    return s->count;
}
int wq_sweep_n_axes(const wq_sweep *s)
{
    return s->n_axes;
}
const char *wq_sweep_axis_key(const wq_sweep *s, int axis)
{
    return s->axis[axis]->string;
}
const char *wq_sweep_model(const wq_sweep *s)
{
    return s->model;
}
const char *wq_sweep_out(const wq_sweep *s)
{
    return s->out[0] ? s->out : NULL;
}
int64_t wq_sweep_stages(const wq_sweep *s)
{
    return s->stages;
}
int wq_sweep_n_evals(const wq_sweep *s)
{
    return s->n_evals;
}
const wq_sweep_eval *wq_sweep_eval_at(const wq_sweep *s, int i)
{
    return &s->evals[i];
}

void wq_sweep_coords(const wq_sweep *s, int64_t index, int *coords)
{
    for (int a = s->n_axes - 1; a >= 0; a--) {
        coords[a] = (int)(index % s->axis_n[a]);
        index /= s->axis_n[a];
    }
}

/* ---- points ---------------------------------------------------------------------------------- */

static void value_str(const cJSON *v, char *dst, size_t n)
{
    if (cJSON_IsString(v))
        snprintf(dst, n, "%s", v->valuestring);
    else if (cJSON_IsBool(v))
        snprintf(dst, n, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else
        snprintf(dst, n, "%.17g", v->valuedouble);
}

/* Short directory-name label of one axis value: w4, g32, sym/asym, gptq, nf4, <key><value>. */
static void value_label(const char *key, const cJSON *v, char *dst, size_t n)
{
    char val[64];
    value_str(v, val, sizeof val);
    const char *dot = strrchr(key, '.');
    if (is_algo_axis(key) || strcmp(key, "dtype") == 0)
        snprintf(dst, n, "%s", val);
    else if (strcmp(key, "bits") == 0)
        snprintf(dst, n, "w%.40s", val);
    else if (strcmp(key, "group_size") == 0)
        snprintf(dst, n, "g%.40s", val);
    else if ((strcmp(key, "use_sym") == 0 || strcmp(key, "sym") == 0) && cJSON_IsBool(v))
        snprintf(dst, n, "%s", cJSON_IsTrue(v) ? "sym" : "asym");
    else
        snprintf(dst, n, "%.20s%.40s", dot ? dot + 1 : key, val);
    for (char *p = dst; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.') *p = '-';
}

/* obj[key] = a copy of v (replacing in place, or appended). */
static int set_item(cJSON *obj, const char *key, const cJSON *v)
{
    cJSON *c = cJSON_Duplicate(v, 1);
    if (!c) return -1;
    if (cJSON_GetObjectItemCaseSensitive(obj, key))
        return cJSON_ReplaceItemInObjectCaseSensitive(obj, key, c) ? 0 : -1;
    return cJSON_AddItemToObject(obj, key, c) ? 0 : -1;
}

static cJSON *object_member(cJSON *obj, const char *key)
{
    cJSON *o = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (o) return o;
    return cJSON_AddObjectToObject(obj, key);
}

wq_status wq_sweep_point_make(const wq_sweep *s, int64_t index, wq_sweep_point *p)
{
    wq_status st = WQ_OK;
    memset(p, 0, sizeof *p);
    p->index = index;
    if (index < 0 || index >= s->count || !s->base) {
        WQ_LOG_ERROR("%s: point %lld is outside [0, %lld)", s->origin, (long long)index,
                     (long long)s->count);
        return WQ_ERR_ARG;
    }
    int coords[WQ_SWEEP_MAX_AXES];
    wq_sweep_coords(s, index, coords);
    char where[1200], desc[600] = "";
    int digits = 2;
    for (int64_t c = s->count - 1; c >= 100; c /= 10)
        digits++;
    size_t off = (size_t)snprintf(p->name, sizeof p->name, "%0*lld", digits, (long long)index);
    for (int a = 0; a < s->n_axes; a++) {
        const cJSON *v = cJSON_GetArrayItem(s->axis[a], coords[a]);
        char lab[64];
        value_str(v, p->values[a], sizeof p->values[a]);
        value_label(s->axis[a]->string, v, lab, sizeof lab);
        if (off < sizeof p->name)
            off += (size_t)snprintf(p->name + off, sizeof p->name - off, "_%s", lab);
        size_t dl = strlen(desc);
        snprintf(desc + dl, sizeof desc - dl, "%s%s=%s", a ? ", " : "", s->axis[a]->string,
                 p->values[a]);
    }
    snprintf(where, sizeof where, "%s: point %lld (%s)", s->origin, (long long)index,
             s->n_axes ? desc : "no axes");

    cJSON *cfg = cJSON_Duplicate(s->base, 1), *sec = NULL, *def = NULL;
    char *canon = NULL;
    int cfg_ok = 0;
    WQ_CHECK_GOTO(cfg, st, WQ_ERR_NOMEM, done, "out of memory");
    cJSON_ArrayForEach(sec, cfg) if (algo_of(sec->string) >= 0) break;
    for (int a = 0; a < s->n_axes; a++) { /* the algorithm axis first: the others go into it */
        if (!is_algo_axis(s->axis[a]->string)) continue;
        const char *name = cJSON_GetArrayItem(s->axis[a], coords[a])->valuestring;
        if (strcmp(name, sec->string) != 0) {
            cJSON *moved = cJSON_DetachItemViaPointer(cfg, sec);
            cJSON_AddItemToObject(cfg, name, moved);
            sec = moved;
        }
    }
    WQ_CHECK_GOTO(cJSON_IsObject(sec), st, WQ_ERR_ARG, done,
                  "%s: the algorithm section must be an object", where);
    cJSON *global = object_member(sec, "global");
    WQ_CHECK_GOTO(cJSON_IsObject(global), st, WQ_ERR_ARG, done, "%s: \"global\" must be an object",
                  where);
    const cJSON *ap = s->algo_params ? cJSON_GetObjectItemCaseSensitive(s->algo_params, sec->string)
                                     : NULL,
                *it;
    cJSON_ArrayForEach(it, ap) WQ_CHECK_GOTO(set_item(global, it->string, it) == 0, st,
                                             WQ_ERR_NOMEM, done, "out of memory");
    if (s->calib) {
        cJSON *c = object_member(cfg, "calibration");
        WQ_CHECK_GOTO(cJSON_IsObject(c), st, WQ_ERR_ARG, done,
                      "%s: \"calibration\" must be an object", where);
        cJSON_ArrayForEach(it, s->calib) WQ_CHECK_GOTO(set_item(c, it->string, it) == 0, st,
                                                       WQ_ERR_NOMEM, done, "out of memory");
    }
    for (int a = 0; a < s->n_axes; a++) {
        const char *k = s->axis[a]->string;
        const cJSON *v = cJSON_GetArrayItem(s->axis[a], coords[a]);
        if (is_algo_axis(k)) continue;
        cJSON *target = global;
        if (strncmp(k, "calibration.", 12) == 0) {
            target = object_member(cfg, "calibration");
            k += 12;
            WQ_CHECK_GOTO(cJSON_IsObject(target) && *k, st, WQ_ERR_ARG, done,
                          "%s: axis '%s' needs a calibration key after the dot", where,
                          s->axis[a]->string);
        }
        WQ_CHECK_GOTO(set_item(target, k, v) == 0, st, WQ_ERR_NOMEM, done, "out of memory");
    }
    char *printed = cJSON_Print(cfg);
    WQ_CHECK_GOTO(printed, st, WQ_ERR_NOMEM, done, "out of memory");
    p->config_json = wq_strdup(printed);
    cJSON_free(printed);
    WQ_CHECK_GOTO(p->config_json, st, WQ_ERR_NOMEM, done, "out of memory");
    WQ_TRY_GOTO(wq_config_parse(p->config_json, where, &p->cfg), st, done);
    cfg_ok = 1;

    /* the definition: canonical config (all defaults resolved), model, evaluations */
    canon = wq_config_to_json(&p->cfg);
    def = cJSON_CreateObject();
    cJSON *cc = canon ? cJSON_Parse(canon) : NULL;
    WQ_CHECK_GOTO(def && cc, st, WQ_ERR_NOMEM, done, "out of memory");
    cJSON_AddItemToObject(def, "config", cc);
    cJSON_AddStringToObject(def, "model", s->model);
    cJSON *ev = cJSON_AddArrayToObject(def, "eval");
    for (int i = 0; i < s->n_evals; i++) {
        const wq_sweep_eval *e = &s->evals[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(ev, o);
        cJSON_AddStringToObject(o, "name", e->name);
        cJSON_AddStringToObject(o, "text", e->text);
        cJSON_AddStringToObject(o, "protocol", e->protocol);
        cJSON *r = cJSON_AddArrayToObject(o, "range");
        cJSON_AddItemToArray(r, cJSON_CreateNumber((double)e->range_begin));
        cJSON_AddItemToArray(r, cJSON_CreateNumber((double)e->range_end));
        cJSON_AddNumberToObject(o, "seqlen", (double)e->seqlen);
        cJSON_AddNumberToObject(o, "windows", (double)e->windows);
    }
    printed = cJSON_PrintUnformatted(def);
    WQ_CHECK_GOTO(printed, st, WQ_ERR_NOMEM, done, "out of memory");
    p->definition = wq_strdup(printed);
    cJSON_free(printed);
    WQ_CHECK_GOTO(p->definition, st, WQ_ERR_NOMEM, done, "out of memory");
done:
    wq_free(canon);
    cJSON_Delete(def);
    cJSON_Delete(cfg);
    if (st != WQ_OK) {
        if (cfg_ok) wq_config_free(&p->cfg);
        wq_free(p->config_json);
        wq_free(p->definition);
        memset(p, 0, sizeof *p);
    }
    return st;
}

void wq_sweep_point_free(wq_sweep_point *p)
{
    if (p->config_json) wq_config_free(&p->cfg);
    wq_free(p->config_json);
    wq_free(p->definition);
    memset(p, 0, sizeof *p);
}
