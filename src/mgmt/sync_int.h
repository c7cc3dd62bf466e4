/* mgmt sync internals: the state of the running agent's mgmt thread, shared
 * by sync.c (queue, spool, upload, policy) and tasks.c (status, tasks). */
#ifndef SHOJI_MGMT_SYNC_INT_H
#define SHOJI_MGMT_SYNC_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mgmt/mgmt_int.h"

#define MGMT_ERRORS 8
#define MGMT_DONE_TASKS 64

struct mgmt {
    struct mgmt_config cfg;
    char state_dir[4096];
    struct mgmt_enrolment e;
    struct mgmt_url u;
    struct mgmt_spool spool;          /* mgmt thread only */
    pthread_t thread;
    pthread_mutex_t lock;             /* guards what follows */
    pthread_cond_t cond;
    atomic_bool stop;                 /* read by the thread between calls */
    bool wake;
    struct buf q[2];                  /* NDJSON per kind, from the workers */
    uint64_t qlines[2];
    uint64_t mem_dropped;
    uint64_t uploaded_lines;
    char etag[160];                   /* of the applied managed policy */
    char errors[MGMT_ERRORS][300];    /* recent errors, a ring */
    unsigned nerrors;
    /* mgmt thread only */
    bool failing;
    bool net_failed;                  /* the last call got no HTTP answer */
    unsigned backoff_ms;
    uint64_t next_upload_ms;
    char done[MGMT_DONE_TASKS][72];   /* task ids whose result was posted */
    unsigned ndone;
};

void mgmt_note_error(struct mgmt *m, const char *what, const char *err);
int mgmt_call(struct mgmt *m, const struct mgmt_http_req *rq, struct mgmt_http_resp *r, char *err,
              size_t errlen);
void mgmt_flush_queue(struct mgmt *m);
int mgmt_poll_policy(struct mgmt *m);
void mgmt_post_status(struct mgmt *m);
void mgmt_run_tasks(struct mgmt *m);

#endif
