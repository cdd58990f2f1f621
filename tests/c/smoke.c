/*
 * C smoke test of the kecs-cluster ABI against the real Docker Engine and the
 * node simulator image: every call's status is checked and everything the
 * library hands out is freed (run under valgrind by tests/c/run.sh).
 *
 * usage: smoke <cluster-name> <kubeconfig-dir>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kecs_cluster.h"

static int failures = 0;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
            failures++;                                                    \
        }                                                                  \
    } while (0)

/* Checks a status; prints and frees the error on failure. */
static int ok(const char *what, kecs_status_t st, kecs_error_t *err) {
    if (st == KECS_STATUS_OK) {
        CHECK(err == NULL, "%s: error set on success", what);
        return 1;
    }
    fprintf(stderr, "FAIL %s: status %d: %s\n", what, (int)st, kecs_error_message(err));
    CHECK(kecs_error_code(err) == st, "%s: error code mismatch", what);
    kecs_error_free(err);
    failures++;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s <cluster-name> <kubeconfig-dir>\n", argv[0]);
        return 2;
    }
    const char *name = argv[1];
    char config[1024];
    snprintf(config, sizeof config,
             "{\"image\":\"kecs-sim/k3s:test\",\"privileged\":false,\"kubeconfigPath\":\"%s\"}", argv[2]);

    CHECK(kecs_abi_version() == KECS_ABI_VERSION, "ABI %u != header %d", kecs_abi_version(), KECS_ABI_VERSION);
    CHECK(strcmp(kecs_version(), KECS_VERSION) == 0, "version %s != header %s", kecs_version(), KECS_VERSION);

    /* bad input: clear status and message, nothing created */
    kecs_error_t *err = NULL;
    kecs_manager_t *bad = NULL;
    kecs_status_t st = kecs_manager_new("{\"provider\":\"nope\"}", &bad, &err);
    CHECK(st == KECS_STATUS_INVALID_ARGUMENT && bad == NULL && err != NULL, "bad config accepted");
    CHECK(err && strstr(kecs_error_message(err), "nope") != NULL, "message does not name the value");
    kecs_error_free(err);
    err = NULL;
    st = kecs_manager_new("{not json", &bad, NULL);
    CHECK(st == KECS_STATUS_INVALID_ARGUMENT, "malformed JSON accepted");

    kecs_manager_t *m = NULL;
    if (!ok("manager_new", kecs_manager_new(config, &m, &err), err)) return 1;
    err = NULL;

    st = kecs_cluster_create(m, NULL, NULL, NULL, &err);
    CHECK(st == KECS_STATUS_INVALID_ARGUMENT && strstr(kecs_error_message(err), "name") != NULL, "NULL name");
    kecs_error_free(err);
    err = NULL;

    /* a token triggered before the call cancels it at once */
    kecs_cancel_t *cancel = kecs_cancel_new();
    CHECK(cancel != NULL, "cancel_new");
    kecs_cancel_trigger(cancel);
    kecs_cancel_trigger(cancel); /* idempotent */
    st = kecs_cluster_create(m, name, NULL, cancel, NULL);
    CHECK(st == KECS_STATUS_CANCELLED, "pre-cancelled create returned %d", (int)st);
    kecs_cancel_free(cancel);

    if (ok("create", kecs_cluster_create(m, name, "{\"agents\":2,\"timeoutMs\":60000}", NULL, &err), err)) {
        bool exists = false;
        err = NULL;
        if (ok("exists", kecs_cluster_exists(m, name, NULL, &exists, &err), err)) CHECK(exists, "exists is false after create");
        err = NULL;
        ok("wait_ready", kecs_cluster_wait_ready(m, name, 30000, NULL, &err), err);
        err = NULL;

        char *yaml = NULL;
        if (ok("kubeconfig", kecs_cluster_kubeconfig(m, name, NULL, &yaml, &err), err)) {
            CHECK(strstr(yaml, "https://127.0.0.1:") != NULL, "kubeconfig has no host URL");
            kecs_string_free(yaml);
        }
        err = NULL;
        char *path = NULL;
        if (ok("kubeconfig_path", kecs_cluster_kubeconfig_path(m, name, &path, &err), err)) {
            FILE *f = fopen(path, "r");
            CHECK(f != NULL, "kubeconfig file %s missing", path);
            if (f) fclose(f);
            kecs_string_free(path);
        }
        err = NULL;
        char *info = NULL;
        if (ok("info", kecs_cluster_info(m, name, NULL, &info, &err), err)) {
            CHECK(strstr(info, "\"nodeCount\":3") != NULL, "info: %s", info);
            CHECK(strstr(info, "\"status\":\"running\"") != NULL, "info: %s", info);
            kecs_string_free(info);
        }
        err = NULL;
        char *list = NULL;
        if (ok("list", kecs_cluster_list(m, NULL, &list, &err), err)) {
            CHECK(list[0] == '[' && strstr(list, name) != NULL, "list: %s", list);
            kecs_string_free(list);
        }
        err = NULL;
    }
    ok("delete", kecs_cluster_delete(m, name, NULL, &err), err);
    err = NULL;
    bool exists = true;
    if (ok("exists after delete", kecs_cluster_exists(m, name, NULL, &exists, &err), err)) CHECK(!exists, "exists after delete");
    err = NULL;
    st = kecs_cluster_info(m, name, NULL, &(char *){NULL}, &err);
    CHECK(st == KECS_STATUS_NOT_FOUND, "info after delete returned %d", (int)st);
    kecs_error_free(err);

    kecs_manager_free(m);
    kecs_manager_free(NULL);
    kecs_string_free(NULL);
    kecs_error_free(NULL);
    kecs_cancel_free(NULL);

    if (failures) {
        fprintf(stderr, "smoke: %d failure(s)\n", failures);
        return 1;
    }
    printf("smoke: all checks passed\n");
    return 0;
}
