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

/* The call first, then ok(): as arguments of one call, the status and `err`
 * could be evaluated in either order, and `err` read before the call sets it. */
#define OK(what, call) (st = (call), ok((what), st, err))

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
    if (!OK("manager_new", kecs_manager_new(config, &m, &err))) return 1;
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

    if (OK("create", kecs_cluster_create(m, name, "{\"agents\":2,\"timeoutMs\":60000}", NULL, &err))) {
        bool exists = false;
        err = NULL;
        if (OK("exists", kecs_cluster_exists(m, name, NULL, &exists, &err))) CHECK(exists, "exists is false after create");
        err = NULL;
        OK("wait_ready", kecs_cluster_wait_ready(m, name, 30000, NULL, &err));
        err = NULL;

        char *yaml = NULL;
        if (OK("kubeconfig", kecs_cluster_kubeconfig(m, name, NULL, &yaml, &err))) {
            CHECK(strstr(yaml, "https://127.0.0.1:") != NULL, "kubeconfig has no host URL");
            kecs_string_free(yaml);
        }
        err = NULL;
        char *path = NULL;
        if (OK("kubeconfig_path", kecs_cluster_kubeconfig_path(m, name, &path, &err))) {
            FILE *f = fopen(path, "r");
            CHECK(f != NULL, "kubeconfig file %s missing", path);
            if (f) fclose(f);
            kecs_string_free(path);
        }
        err = NULL;
        char *info = NULL;
        if (OK("info", kecs_cluster_info(m, name, NULL, &info, &err))) {
            CHECK(strstr(info, "\"nodeCount\":3") != NULL, "info: %s", info);
            CHECK(strstr(info, "\"status\":\"running\"") != NULL, "info: %s", info);
            kecs_string_free(info);
        }
        err = NULL;
        char *list = NULL;
        if (OK("list", kecs_cluster_list(m, NULL, &list, &err))) {
            CHECK(list[0] == '[' && strstr(list, name) != NULL, "list: %s", list);
            kecs_string_free(list);
        }
        err = NULL;
        /* a port on the running cluster's load balancer, then stop and start */
        char *port = NULL;
        if (OK("port_add", kecs_cluster_port_add(m, name, "{\"hostPort\":0,\"containerPort\":30080}", NULL, &port, &err))) {
            CHECK(strstr(port, "\"containerPort\":30080") != NULL, "port_add: %s", port);
            kecs_string_free(port);
        }
        err = NULL;
        char *ports = NULL;
        if (OK("ports", kecs_cluster_ports(m, name, NULL, &ports, &err))) {
            CHECK(strstr(ports, "\"added\":true") != NULL, "ports: %s", ports);
            kecs_string_free(ports);
        }
        err = NULL;
        bool running = true;
        OK("stop", kecs_cluster_stop(m, name, NULL, &err));
        err = NULL;
        if (OK("is_running", kecs_cluster_is_running(m, name, NULL, &running, &err))) CHECK(!running, "running after stop");
        err = NULL;
        OK("start", kecs_cluster_start(m, name, 60000, NULL, &err));
        err = NULL;
        if (OK("is_running", kecs_cluster_is_running(m, name, NULL, &running, &err))) CHECK(running, "not running after start");
        err = NULL;
    }
    OK("delete", kecs_cluster_delete(m, name, NULL, &err));
    err = NULL;
    bool exists = true;
    if (OK("exists after delete", kecs_cluster_exists(m, name, NULL, &exists, &err))) CHECK(!exists, "exists after delete");
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
