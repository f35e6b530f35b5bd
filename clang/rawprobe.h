/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Records and per-probe programs shared by rawprobe.bpf.c and rawprobe's Python side.
 *
 * rawprobe/_bpfabi.py declares each struct again with construct; tests/test_bpfabi.py proves the
 * two agree, member by member, against the BTF of the built object. Change both together.
 *
 * A probe's configuration (struct rp_probe) is a small program the generic BPF programs
 * interpret: each field says where a value comes from (a register or a constant, then a chain
 * of dereferences), how to store it (integer bytes, a string, the task's comm) and where in the
 * record it goes. Every attached uprobe carries a BPF cookie: its event id in the low 32 bits,
 * the index of its configuration in the upper 32.
 */
#ifndef __RAWPROBE_H__
#define __RAWPROBE_H__

#define RP_MAX_FIELDS 32      /* fetch-args per probe */
#define RP_MAX_DEREF 8        /* nesting of +OFFS(...) */
#define RP_MAX_PREDICATES 32  /* filter program length */
#define RP_MAX_STR_CONSTS 8   /* string constants a filter may compare with */
#define RP_STR_CONST_LEN 64   /* bytes of one string constant (NUL included) */
#define RP_MAX_RECORD 16384   /* bytes of one record: header, fixed fields and strings */
#define RP_MAX_NEST 4         /* programs that may interleave on one CPU (preemption) */
#define RP_REGS_WORDS 32      /* pt_regs copied as 64-bit words (power of two) */
/*
 * In return programs, the word after pt_regs that holds the probed function's address
 * (bpf_get_func_ip(): Linux 6.6 for uprobes), from which the kernel's @+OFFSET is reckoned at
 * a return (kernel/trace/trace_uprobe.c, translate_user_vaddr(): the breakpoint's address).
 */
#define RP_FUNC_IP_WORD 31 
#define RP_COMM_LEN 16

/* Where a field's value starts (struct rp_field.base). */
enum rp_base {
	RP_BASE_REG = 0,   /* regs[reg] + imm */
	RP_BASE_IMM = 1,   /* imm */
	RP_BASE_COMM = 2,  /* the task's comm; stored as a string */
	RP_BASE_RECORD = 3, /* a tracepoint's record + imm: kernel memory (see rp_kernel_fetch) */
};

/* How a field is stored in the record (struct rp_field.store). */
enum rp_store {
	RP_STORE_INT = 0,    /* size * count bytes */
	RP_STORE_STRING = 1, /* a NUL-terminated string, appended; the field holds a data_loc */
	/* Kernel-side probes only (rp_kernel_fetch): */
	RP_STORE_DATA_LOC = 2,     /* a tracepoint's __data_loc string, appended as a string */
	RP_STORE_BUFFER = 3,       /* max_len bytes at most, appended; count: the register that
				    * holds the length (a negative length reads nothing) */
	RP_STORE_STRING_ARRAY = 4, /* a NULL-terminated array of string pointers (argv): count
				    * strings at most, appended NUL after NUL, max_len bytes in all */
};

/*
 * One fetch-arg. Starting from the base value v, each of the first nderef - 1 dereferences
 * replaces v with the 64-bit word at v + deref[i]; the last one names the memory the value is
 * read from (v + deref[nderef - 1]). With nderef == 0 the value is v itself.
 */
struct rp_field {
	__u8 base;
	__u8 store;
	__u8 nderef;
	__u8 size;    /* bytes per element: 1, 2, 4 or 8 */
	__u16 count;  /* elements; 1 unless an array */
	__u16 dest;   /* offset of the field in the record */
	__u32 reg;    /* index into the pt_regs words (RP_BASE_REG) */
	__u32 max_len; /* strings: bytes kept at most, NUL included (one more is read) */
	__s64 imm;
	__s64 deref[RP_MAX_DEREF];
};

/* Filter program, in postfix order (struct rp_predicate.op). */
enum rp_pred_op {
	RP_PRED_CMP = 0,        /* push (field <cmp> value) */
	RP_PRED_STR_EQ = 1,     /* push (string field == strings[str_index]) */
	RP_PRED_STR_PREFIX = 2, /* push (string field starts with strings[str_index]) */
	RP_PRED_AND = 3,        /* pop b, pop a, push a && b */
	RP_PRED_OR = 4,         /* pop b, pop a, push a || b */
	RP_PRED_NOT = 5,        /* pop a, push !a */
};

enum rp_cmp {
	RP_CMP_EQ = 0,
	RP_CMP_NE = 1,
	RP_CMP_LT = 2,
	RP_CMP_LE = 3,
	RP_CMP_GT = 4,
	RP_CMP_GE = 5,
	RP_CMP_AND = 6, /* (field & value) != 0 */
};

struct rp_predicate {
	__u8 op;
	__u8 cmp;       /* integers: enum rp_cmp; strings: RP_CMP_NE negates (a fault stays false) */
	__u8 size;      /* integers: 1, 2, 4 or 8; strings: 4 (a data_loc) or RP_COMM_LEN (inline) */
	__u8 is_signed;
	__u16 src;      /* offset of the field (or header member) in the record */
	__u16 str_index;
	__u32 field;    /* fetch-arg index, for its fault bit; ~0 for header members */
	__u32 str_len;  /* bytes of the string constant, NUL excluded */
	__s64 value;
};

/* What a probe does with a hit that passed its filter (struct rp_aggregation.action). */
enum rp_action {
	RP_ACTION_STREAM = 0,     /* a record into the ring buffer */
	RP_ACTION_AGGREGATE = 1,  /* aggregates[key, bucket] takes the hit (and its value) */
	RP_ACTION_SPAN_START = 2, /* spans[span, match] = now, with the key parts read here */
	RP_ACTION_SPAN_END = 3,   /* the time since spans[span, match], aggregated or streamed */
	RP_ACTION_TALLY = 4,      /* nothing more: the stats map's hit counter is the count */
};

/* What an aggregation adds up besides the hit (struct rp_aggregation.value). */
enum rp_value {
	RP_VALUE_NONE = 0,  /* counts only */
	RP_VALUE_FIELD = 1, /* the integer field at value_src */
	RP_VALUE_SPAN = 2,  /* the span's duration in ns (RP_ACTION_SPAN_END) */
};

/* What a grouping key part is (struct rp_key_part.kind). */
enum rp_key {
	RP_KEY_NONE = 0,   /* ends the list */
	RP_KEY_BYTES = 1,  /* size bytes of the record at src (pid, comm, an integer) */
	RP_KEY_STRING = 2, /* the string field whose data_loc is at src, cut to size - 1 bytes */
};

enum rp_hist {
	RP_HIST_NONE = 0,   /* no buckets: bucket 0 */
	RP_HIST_LOG2 = 1,   /* bucket 0: 0, bucket n > 0: [2^(n-1), 2^n), bucket -1: negative */
	RP_HIST_LINEAR = 2, /* bucket n: [min + n*step, min + (n+1)*step), -1 below, nbuckets above */
};

#define RP_KEY_LEN 64        /* bytes of a grouping key's data; key parts use RP_KEY_LEN - 8 */
#define RP_MAX_KEYS 4        /* parts of one grouping key */
#define RP_STACK_DEPTH 127   /* user stack frames kept */
/* struct rp_aggregation.span_id: a latency pair, whose START is its END's event id - 1 */
#define RP_SPAN_PAIRED 0xffffffffU

/* One part of a grouping key: copied from the record into rp_agg_key.data at dest. */
struct rp_key_part {
	__u8 kind;  /* enum rp_key */
	__u8 dest;  /* offset in rp_agg_key.data */
	__u8 size;  /* bytes (strings: at most, NUL included) */
	__u8 reserved;
	__u16 src;  /* offset in the record (strings: of the data_loc) */
	__u16 reserved2;
};

struct rp_aggregation {
	__u32 action;        /* enum rp_action */
	__u32 hist;          /* enum rp_hist */
	__u16 value_src;     /* offset in the record of the value (RP_VALUE_FIELD) */
	__u8 value_size;
	__u8 value_signed;   /* also how min and max compare */
	__u32 value_field;   /* fetch-arg index of the value, for its fault bit; ~0 for none */
	__u8 value;          /* enum rp_value */
	__u8 accumulate;     /* also add the value into sum, min and max */
	__u8 by_stack;       /* also group by the user stack */
	__u8 match_size;     /* spans: bytes of the value START and END match on; 0: the thread */
	__u16 match_src;     /* spans: offset in the record of that value */
	__u8 match_signed;
	__u8 reserved;
	__u32 match_field;   /* spans: its fetch-arg index, for its fault bit; ~0 for none */
	__u32 span_id;       /* spans: shared by START and END, or RP_SPAN_PAIRED */
	__u16 duration_dest; /* a streamed span: where END's record gets the duration (0: none) */
	__u16 reserved2;
	__u32 reserved3;
	__s64 lin_min;
	__s64 lin_step;
	__s64 lin_buckets;
	struct rp_key_part keys[RP_MAX_KEYS];
};

/* In the configuration half of a cookie: this probe only counts its hits (RP_ACTION_TALLY,
 * no filter), so the program need not even look its configuration up. */
#define RP_COOKIE_TALLY (1U << 31)

/* struct rp_probe.flags */
#define RP_PROBE_RETURN (1U << 0)
#define RP_PROBE_STACK (1U << 1) /* records carry the user stack (a data_loc at stack_dest) */
/* The probe is on a function's first instruction: its frame is not set up yet, so a frame
 * pointer walk skips the caller; its return address, at the top of the stack, is added. */
#define RP_PROBE_AT_ENTRY (1U << 2)

struct rp_probe {
	__u32 flags;
	__u32 nfields;
	__u32 npredicates;
	__u32 fixed_size; /* header plus fixed fields: where strings start */
	__u32 stack_dest; /* RP_PROBE_STACK: offset of the stack's data_loc in the record */
	__u32 reserved;
	struct rp_aggregation agg;
	struct rp_field fields[RP_MAX_FIELDS];
	struct rp_predicate predicates[RP_MAX_PREDICATES];
	char strings[RP_MAX_STR_CONSTS][RP_STR_CONST_LEN];
};

/* Load-time settings (the object's only read-only global, rp_settings). */
struct rp_settings {
	__u32 follow;    /* record only processes in the followed set (attach -- COMMAND) */
	__u32 self_tgid; /* rawprobe's own process: its hits are ignored, never counted */
	/* What the run's configurations use. Zero leaves that code out of the programs the
	 * verifier checks (it prunes branches on read-only globals): a stream without filters
	 * loads in a fraction of the time. */
	__u32 filters;    /* some probe has a filter */
	__u32 aggregates; /* some probe aggregates (agg.action other than RP_ACTION_STREAM) */
};

/* The key of the aggregates map. When grouped by a stack of a probe at a function's entry,
 * the last 8 bytes of data hold the caller's return address (see RP_PROBE_AT_ENTRY). */
struct rp_agg_key {
	__u32 event_id;
	__s32 stack_id; /* -1 when not grouped by stack */
	__s64 bucket;   /* histograms; 0 otherwise */
	__u8 data[RP_KEY_LEN];
};

/* The value of the aggregates map, per CPU; summed (count, sum) or compared (min, max) over
 * the CPUs where count is not 0. sum, min and max stay 0 without RP_VALUE_*. */
struct rp_agg_value {
	__u64 count;
	__s64 sum; /* modulo 2^64 */
	__s64 min;
	__s64 max;
};

/* The key of the spans map: which span, and the value START and END match on. */
struct rp_span_key {
	__u32 span_id;
	__u32 reserved;
	__u64 match; /* the thread id, or the matching value (sign-extended) */
};

/* An open span: when it started, and the grouping key parts START read. */
struct rp_span_start {
	__u64 ts_ns;
	__u8 data[RP_KEY_LEN - 8];
};

/* Every record starts with this header. A string field holds a data_loc: (length << 16) | offset
 * from the start of the record, length including the NUL, as the kernel's __data_loc. */
struct rp_header {
	__u64 ts_ns;      /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 pid;        /* tgid */
	__u32 tid;
	__u32 event_id;
	__u32 cpu;
	__u32 faults;     /* bit i: fetch-arg i could not be read (low 32 fields) */
	__u32 truncated;  /* bit i: string fetch-arg i was cut at its maximum length */
	char comm[RP_COMM_LEN];
};

/* Per event id, per CPU; the sum over CPUs is what the run reports. */
struct rp_stats {
	__u64 hits;      /* times the probe fired */
	__u64 filtered;  /* records the filter rejected */
	__u64 lost;      /* records that did not fit in the ring buffer, or nesting too deep */
	__u64 unmatched; /* span ends: no open span matched (it began before the probes, or its
			  * entry was evicted from the full spans map) */
	__u64 replaced;  /* span starts: an open span with the same match was replaced */
};

/*
 * Kernel-side probes: system calls (sys:) and tracepoints (tp:).
 *
 * One pair of programs on the raw syscall tracepoints (tp_btf/sys_enter, tp_btf/sys_exit)
 * serves every system call: the `syscalls` array, indexed by system call number, says which are
 * probed and by which event. At entry the time, number and arguments go to the task's storage;
 * at exit one record is made from them (struct rp_probe fields over the registers below:
 * arguments 0-5, the return value, the duration), filtered and streamed or aggregated like a
 * uprobe's. Tracepoints (perf events of type PERF_TYPE_TRACEPOINT, one program, a cookie per
 * event as for uprobes) read their fields from the record the kernel made (RP_BASE_RECORD).
 */
#define RP_SYS_MAX 1024       /* system call numbers the `syscalls` array covers */
#define RP_SYS_REG_RET 6      /* the return value's index in rp_scratch.regs */
#define RP_SYS_REG_DURATION 7 /* the duration's (ns, entry to exit) */
#define RP_SYS_REG_NR 8       /* the system call number's */
#define RP_ARGV_MAX 32        /* strings an RP_STORE_STRING_ARRAY field keeps at most */
#define RP_EXEC_STASH 8192    /* bytes of an execve record kept from entry to exit */

/* struct rp_syscall.flags */
#define RP_SYS_TRACED (1U << 0)    /* this system call is probed */
#define RP_SYS_SUMMARY (1U << 1)   /* counted in the totals maps (rawprobe syscalls) */
#define RP_SYS_RECORD (1U << 2)    /* a record is made (streamed, aggregated, or filtered) */
#define RP_SYS_NO_RETURN (1U << 3) /* exit, exit_group: the event is made at entry */
#define RP_SYS_EXEC (1U << 4)      /* execve, execveat: strings read at entry, kept to exit */
#define RP_SYS_TALLY (1U << 5)     /* a plain count: the hit counter is the answer */
#define RP_SYS_BY_PID (1U << 6)    /* totals per process (rawprobe syscalls --by pid) */

struct rp_syscall {
	__u32 flags;
	__u32 event_id;
	__u32 config_id; /* its struct rp_probe: fields, filter, aggregation */
	__u32 reserved;
};

/* Per system call (per process with --by pid): what rawprobe syscalls reports. */
struct rp_sys_totals {
	__u64 calls;
	__u64 errors;   /* returns in -4095..-1 */
	__u64 total_ns; /* entry to exit */
};

struct rp_sys_key {
	__u32 nr;
	__u32 pid; /* tgid; 0 when not grouped by process */
};

/* Which processes kernel-side probes record, set when they are attached (the one entry of
 * the kernel_filter map; asked once per thread for system calls, at every tracepoint hit). */
struct rp_kernel_filter {
	__u32 pids;     /* only processes in the followed set (-p PID) */
	__u32 reserved;
};

#endif /* __RAWPROBE_H__ */
