/* proxy/admin: the agent's local admin socket (STATE/admin.sock) that
 * streams the live event feed to `shoji watch`.
 * Must never: be reachable by anyone but the agent's user (mode 0600), or
 * let a slow reader hold memory without bound. */
#ifndef SHOJI_PROXY_ADMIN_H
#define SHOJI_PROXY_ADMIN_H

#include <stddef.h>
#include <uv.h>

#include "log/events.h"

struct admin;

int admin_start(uv_loop_t *loop, const char *state_dir, struct events *events, struct admin **out,
                char *err, size_t errlen);
/* Closes the handles (the loop must run once more), removes the socket. */
void admin_stop(struct admin *a);
void admin_free(struct admin *a);

#endif
