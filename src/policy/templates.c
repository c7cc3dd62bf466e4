/* templates: the built-in policy templates per audience, mapping UT1
 * category names to actions. Compiled in, so the binary is self-contained.
 * A policy's own `categories` override its template entry by entry.
 * docs/POLICY.md prints these tables; keep them in step. */
#include <string.h>

#include "policy/policy_int.h"
#include "util/util.h"

#define B PCA_BLOCK
#define V PCA_VIEW_ONLY
#define A PCA_ALLOW

/* Blocked for every audience: harmful to the machine or illegal. */
#define COMMON_BLOCK                                                         \
    { "malware", B }, { "phishing", B }, { "cryptojacking", B },             \
    { "stalkerware", B }, { "ddos", B }, { "dialer", B }, { "warez", B },    \
    { "adult", B }, { "porn", B }

/* Ways around the filter itself. */
#define CIRCUMVENTION_BLOCK                                                  \
    { "redirector", B }, { "strict_redirector", B }, { "strong_redirector", B }, \
    { "proxy", B }, { "vpn", B }, { "residential-proxies", B }, { "doh", B }

static const struct pol_template_entry t_elementary[] = {
    COMMON_BLOCK, CIRCUMVENTION_BLOCK,
    { "mixed_adult", B }, { "lingerie", B }, { "dating", B }, { "sexual_education", V },
    { "agressif", B }, { "aggressive", B }, { "violence", B }, { "dangerous_material", B },
    { "drogue", B }, { "drugs", B }, { "gambling", B }, { "arjel", B }, { "sect", B },
    { "hacking", B }, { "tricheur", B }, { "tricheur_pix", B }, { "chat", B },
    { "social_networks", B }, { "webmail", B }, { "mail", B }, { "forums", V },
    { "blog", V }, { "games", B }, { "audio-video", B }, { "radio", B },
    { "download", B }, { "filehosting", B }, { "remote-control", B },
    { "shopping", B }, { "bitcoin", B }, { "financial", B }, { "astrology", B },
    { "celebrity", B }, { "manga", V }, { "marketingware", B }, { "publicite", B },
    { "ads", B }, { "shortener", B }, { "fakenews", B }, { "jobsearch", B },
    { "mobile-phone", B }, { "dynamic-dns", B }, { "ai", B },
    { "educational_games", A }, { "child", A },
};

static const struct pol_template_entry t_junior_high[] = {
    COMMON_BLOCK, CIRCUMVENTION_BLOCK,
    { "mixed_adult", B }, { "lingerie", B }, { "dating", B }, { "sexual_education", A },
    { "agressif", B }, { "aggressive", B }, { "violence", B }, { "dangerous_material", B },
    { "drogue", B }, { "drugs", B }, { "gambling", B }, { "arjel", B }, { "sect", B },
    { "hacking", B }, { "tricheur", B }, { "tricheur_pix", B }, { "chat", B },
    { "social_networks", V }, { "webmail", V }, { "forums", V }, { "blog", V },
    { "games", B }, { "audio-video", V }, { "download", B }, { "filehosting", B },
    { "remote-control", B }, { "shopping", V }, { "bitcoin", B }, { "astrology", V },
    { "marketingware", B }, { "publicite", B }, { "ads", B }, { "fakenews", V },
    { "dynamic-dns", B }, { "ai", V }, { "educational_games", A },
};

static const struct pol_template_entry t_high_school[] = {
    COMMON_BLOCK, CIRCUMVENTION_BLOCK,
    { "mixed_adult", B }, { "lingerie", V }, { "dating", B }, { "agressif", B },
    { "aggressive", B }, { "violence", B }, { "dangerous_material", B }, { "drogue", B },
    { "drugs", B }, { "gambling", B }, { "arjel", B }, { "sect", B }, { "hacking", B },
    { "tricheur", B }, { "tricheur_pix", B }, { "chat", V }, { "social_networks", V },
    { "games", B }, { "download", V }, { "filehosting", V }, { "remote-control", B },
    { "bitcoin", V }, { "marketingware", B }, { "dynamic-dns", V },
    { "educational_games", A },
};

static const struct pol_template_entry t_university[] = {
    COMMON_BLOCK,
    { "mixed_adult", V }, { "agressif", B }, { "aggressive", B }, { "gambling", B },
    { "arjel", B }, { "hacking", V }, { "tricheur", B }, { "tricheur_pix", B },
    { "marketingware", B }, { "strong_redirector", B }, { "residential-proxies", B },
};

static const struct pol_template_entry t_enterprise[] = {
    COMMON_BLOCK,
    { "mixed_adult", B }, { "agressif", B }, { "aggressive", B }, { "violence", B },
    { "gambling", B }, { "arjel", B }, { "hacking", B }, { "dating", B }, { "games", B },
    { "marketingware", B }, { "residential-proxies", B }, { "strong_redirector", B },
    { "remote-control", V }, { "filehosting", V }, { "webmail", V }, { "social_networks", V },
    { "chat", V }, { "ai", V },
};

#undef B
#undef V
#undef A

static const struct {
    const char *name;
    const struct pol_template_entry *e;
    size_t n;
} templates[] = {
    { "elementary", t_elementary, UTIL_ARRAY_LEN(t_elementary) },
    { "junior_high", t_junior_high, UTIL_ARRAY_LEN(t_junior_high) },
    { "high_school", t_high_school, UTIL_ARRAY_LEN(t_high_school) },
    { "university", t_university, UTIL_ARRAY_LEN(t_university) },
    { "enterprise", t_enterprise, UTIL_ARRAY_LEN(t_enterprise) },
};

const char *const pol_template_names[] = {
    "elementary", "junior_high", "high_school", "university", "enterprise", NULL,
};

const char *const pol_ut1_categories[] = {
    "adult", "ads", "aggressive", "agressif", "ai", "arjel", "associations_religieuses",
    "astrology", "audio-video", "bank", "bitcoin", "blog", "celebrity", "chat", "child",
    "cleaning", "cooking", "cryptojacking", "dangerous_material", "dating", "ddos",
    "dialer", "doh", "download", "drogue", "drugs", "dynamic-dns", "educational_games",
    "examen_pix", "exceptions_liste_bu", "fakenews", "filehosting", "financial", "forums",
    "gambling", "games", "hacking", "jobsearch", "lingerie", "liste_blanche", "liste_bu",
    "mail", "malware", "manga", "marketingware", "mixed_adult", "mobile-phone", "phishing",
    "porn", "press", "proxy", "publicite", "radio", "reaffected", "redirector",
    "remote-control", "residential-proxies", "sect", "sexual_education", "shopping",
    "shortener", "social_networks", "special", "sports", "stalkerware", "strict_redirector",
    "strong_redirector", "translation", "tricheur", "tricheur_pix", "update", "violence",
    "vpn", "warez", "webhosting", "webmail", NULL,
};

const struct pol_template_entry *pol_template(const char *name, size_t *n)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(templates); i++) {
        if (strcmp(templates[i].name, name) == 0) {
            *n = templates[i].n;
            return templates[i].e;
        }
    }
    *n = 0;
    return NULL;
}
