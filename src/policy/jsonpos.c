/* jsonpos: where in a JSON text a value is (jansson reports positions of
 * syntax errors only), and "did you mean" for misspelt keys and names.
 * Both serve the policy loader's error messages. Iterative (no recursion),
 * so any nesting depth is safe. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_int.h"

struct jscan {
    const char *s;
    size_t n, i;
    int line;
};

static void skip_ws(struct jscan *j)
{
    while (j->i < j->n && isspace((unsigned char)j->s[j->i])) {
        if (j->s[j->i] == '\n')
            j->line++;
        j->i++;
    }
}

/* At a '"': moves past the closing quote. Sets *start and *len to the raw body. */
static bool skip_string(struct jscan *j, const char **start, size_t *len)
{
    if (j->i >= j->n || j->s[j->i] != '"')
        return false;
    size_t b = ++j->i;
    while (j->i < j->n && j->s[j->i] != '"') {
        if (j->s[j->i] == '\\')
            j->i++;
        else if (j->s[j->i] == '\n')
            j->line++;
        j->i++;
    }
    if (j->i >= j->n)
        return false;
    if (start) {
        *start = j->s + b;
        *len = j->i - b;
    }
    j->i++;
    return true;
}

static bool skip_value(struct jscan *j)
{
    skip_ws(j);
    if (j->i >= j->n)
        return false;
    char c = j->s[j->i];
    if (c == '"')
        return skip_string(j, NULL, NULL);
    if (c != '{' && c != '[') {
        while (j->i < j->n && !strchr(",}] \t\r\n", j->s[j->i]))
            j->i++;
        return true;
    }
    size_t depth = 0;
    while (j->i < j->n) {
        c = j->s[j->i];
        if (c == '"') {
            if (!skip_string(j, NULL, NULL))
                return false;
            continue;
        }
        if (c == '\n')
            j->line++;
        if (c == '{' || c == '[')
            depth++;
        else if ((c == '}' || c == ']') && --depth == 0) {
            j->i++;
            return true;
        }
        j->i++;
    }
    return false;
}

/* Moves into the member `key` of the object at the cursor. */
static bool enter_key(struct jscan *j, const char *key, size_t kn)
{
    skip_ws(j);
    if (j->i >= j->n || j->s[j->i] != '{')
        return false;
    j->i++;
    for (;;) {
        skip_ws(j);
        const char *k;
        size_t kl;
        if (!skip_string(j, &k, &kl))
            return false;
        skip_ws(j);
        if (j->i >= j->n || j->s[j->i] != ':')
            return false;
        j->i++;
        skip_ws(j);
        if (kl == kn && memcmp(k, key, kn) == 0)
            return true;
        if (!skip_value(j))
            return false;
        skip_ws(j);
        if (j->i >= j->n || j->s[j->i] != ',')
            return false;
        j->i++;
    }
}

static bool enter_index(struct jscan *j, size_t idx)
{
    skip_ws(j);
    if (j->i >= j->n || j->s[j->i] != '[')
        return false;
    j->i++;
    for (size_t k = 0; k < idx; k++) {
        if (!skip_value(j))
            return false;
        skip_ws(j);
        if (j->i >= j->n || j->s[j->i] != ',')
            return false;
        j->i++;
    }
    skip_ws(j);
    return j->i < j->n && j->s[j->i] != ']';
}

int pol_json_line(const char *text, size_t len, const char *path)
{
    struct jscan j = { text, len, 0, 1 };
    skip_ws(&j);
    int found = j.i < j.n ? j.line : 0;
    const char *p = path;
    while (p && *p) {
        bool ok;
        if (*p == '[') {
            char *end;
            unsigned long idx = strtoul(p + 1, &end, 10);
            if (*end != ']')
                break;
            ok = enter_index(&j, idx);
            p = end + 1;
        } else {
            if (*p == '.')
                p++;
            size_t kn = strcspn(p, ".[");
            ok = enter_key(&j, p, kn);
            p += kn;
        }
        if (!ok)
            break;
        found = j.line;
    }
    return found;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return (size_t)-1;
    size_t row[65];
    for (size_t k = 0; k <= lb; k++)
        row[k] = k;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t k = 1; k <= lb; k++) {
            size_t up = row[k];
            size_t cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[k - 1]) ? 0 : 1;
            size_t v = diag + cost;
            if (row[k] + 1 < v)
                v = row[k] + 1;
            if (row[k - 1] + 1 < v)
                v = row[k - 1] + 1;
            row[k] = v;
            diag = up;
        }
    }
    return row[lb];
}

const char *pol_did_you_mean(const char *word, const char *const *cands, size_t n)
{
    const char *best = NULL;
    size_t bd = (size_t)-1, wl = strlen(word);
    size_t limit = wl / 3 > 2 ? wl / 3 : 2;
    for (size_t i = 0; i < n && cands[i]; i++) {
        size_t d = edit_distance(word, cands[i]);
        if (d < bd) {
            bd = d;
            best = cands[i];
        }
    }
    return bd <= limit && bd < wl ? best : NULL;
}
