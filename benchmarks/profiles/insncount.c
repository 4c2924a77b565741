/* Minimal QEMU (7.2, plugin API v1) TCG plugin: counts guest instructions executed, and
 * records the count when given guest addresses are first executed (0x7c00: the firmware
 * hands over to the boot sector). Written for the Stratus realboot profile. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <stdbool.h>
#include <time.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*udata_cb_t)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb_t cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t count;
static const uint64_t watched[] = {0x7c00, 0x100000, 0x1000000};
#define NW (sizeof(watched) / sizeof(watched[0]))
static uint64_t at[NW];
static double t_at[NW], t_install, t_first;
static bool started;
static double now(void) { struct timespec ts; clock_gettime(CLOCK_REALTIME, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }
static bool hit[NW];
static char out[4096] = "/dev/stderr";

static void dump(void) {
    FILE *f = fopen(out, "w");
    if (!f) return;
    fprintf(f, "{\"t_first\": %.3f, \"insns\": %llu, \"first_ms\": %.1f", t_first, (unsigned long long)count,
            started ? (t_first - t_install) * 1e3 : -1.0);
    for (size_t i = 0; i < NW; i++)
        if (hit[i]) fprintf(f, ", \"at_%#llx\": %llu, \"ms_%#llx\": %.1f",
                            (unsigned long long)watched[i], (unsigned long long)at[i],
                            (unsigned long long)watched[i], (t_at[i] - t_first) * 1e3);
    fprintf(f, "}\n");
    fclose(f);
}

static void on_watched(unsigned int vcpu, void *udata) {
    size_t i = (size_t)(uintptr_t)udata;
    if (!hit[i]) { hit[i] = true; at[i] = count; t_at[i] = now(); dump(); }
}

static void on_first(unsigned int vcpu, void *udata) {
    if (!started) { started = true; t_first = now(); }
}

static void on_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    uint64_t pc = qemu_plugin_tb_vaddr(tb);
    if (!started)
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_first, QEMU_PLUGIN_CB_NO_REGS, NULL);
    for (size_t i = 0; i < NW; i++)
        if (pc == watched[i] && !hit[i])
            qemu_plugin_register_vcpu_tb_exec_cb(tb, on_watched, QEMU_PLUGIN_CB_NO_REGS,
                                                 (void *)(uintptr_t)i);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &count,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_exit_(qemu_plugin_id_t id, void *p) { dump(); }

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (!strncmp(argv[i], "out=", 4)) snprintf(out, sizeof out, "%s", argv[i] + 4);
    t_install = now();
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_trans);
    qemu_plugin_register_atexit_cb(id, on_exit_, NULL);
    return 0;
}
