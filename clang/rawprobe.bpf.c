// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * rawprobe's generic uprobe programs. One entry program and one return program serve every
 * probe: the BPF cookie of the attachment selects the probe's configuration (rawprobe.h), which
 * says what to fetch, how to filter, and where each value goes in the record.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "rawprobe.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* One record in the making, per nesting level. rec is twice the largest record so that every
 * masked offset plus a bounded length stays inside it, which is what the verifier checks. */
struct rp_scratch {
	__u64 regs[RP_REGS_WORDS];
	struct rp_agg_key key; /* the aggregates key in the making */
	union {
		struct rp_header header;
		__u8 bytes[2 * RP_MAX_RECORD];
	} rec;
};


struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* set to the number of configurations before load */
	__type(key, __u32);
	__type(value, struct rp_probe);
} probes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1); /* set to the number of event ids before load */
	__type(key, __u32);
	__type(value, struct rp_stats);
} stats SEC(".maps");

/* Per CPU, how many programs are running on it (see run_probe). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} nesting SEC(".maps");

/* Slot cpu * RP_MAX_NEST + level. A plain array: per-CPU values are limited to 32 KiB. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RP_MAX_NEST); /* set to possible CPUs * RP_MAX_NEST before load */
	__type(key, __u32);
	__type(value, struct rp_scratch);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* --ring-size */
} events SEC(".maps");

/*
 * Following a command and its children (attach -- COMMAND): the probes are host-wide and only
 * processes in this set are recorded. The command enters it "armed" (FOLLOW_ARMED) while it
 * is still rawprobe's forked child, and is traced (FOLLOW_TRACED) from its exec on; the set
 * grows at every fork of a traced process, before the child first runs (sched_process_fork
 * fires in the parent). Per-process perf events cannot do this: inherited uprobe events lose
 * their BPF program when the first child exits.
 */
#define FOLLOW_TRACED 1
#define FOLLOW_ARMED 2

/*
 * rawprobe's own process never produces events: a host-wide probe on code rawprobe runs
 * itself (malloc, say) would otherwise feed on its own output, each event processed making
 * more. Set before load (const volatile: the verifier sees the value, dead code goes).
 */
const volatile struct rp_settings rp_settings = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);   /* tgid */
	__type(value, __u8);
} followed SEC(".maps");

#define REC_MASK (RP_MAX_RECORD - 1)
/* The stack pointer's index in the pt_regs words. */
#define RP_SP_WORD (__builtin_offsetof(struct pt_regs, sp) / 8)

static __always_inline void store_int(__u8 *dest, __u64 value, __u32 size)
{
	switch (size) {
	case 1:
		*(__u8 *)dest = value;
		break;
	case 2:
		*(__u16 *)dest = value;
		break;
	case 4:
		*(__u32 *)dest = value;
		break;
	default:
		*(__u64 *)dest = value;
		break;
	}
}

/*
 * Reading user memory. Non-sleepable programs may not fault pages in, so a string in a page the
 * process has not touched yet (a literal in .rodata, say) cannot be read by them; the sleepable
 * variants copy as the kernel's own uprobe tracer does (kernel/trace/trace_uprobe.c), faulting
 * pages in. rawprobe uses the sleepable programs for probes that read memory when the kernel
 * has them (bpf_copy_from_user_str: Linux 6.12), and the others otherwise.
 */
extern int bpf_copy_from_user_str(void *dst, __u32 dst__sz, const void *unsafe_ptr__ign,
				  __u64 flags) __ksym;

#define read_nofault(dst, size, src) bpf_probe_read_user(dst, size, src)
#define read_str_nofault(dst, size, src) bpf_probe_read_user_str(dst, size, src)
#define read_faulting(dst, size, src) bpf_copy_from_user(dst, size, src)
#define read_str_faulting(dst, size, src) bpf_copy_from_user_str(dst, size, src, 0)

/*
 * Fetch one field into the record; returns the new end of the record (strings grow it).
 * Global functions: the verifier checks each once, not once per field of the caller's loop.
 */
#define DEFINE_FETCH(NAME, READ, READ_STR)						\
__noinline int NAME(struct rp_scratch *s, const struct rp_field *f, __u32 index, __u32 tail)	\
{											\
	__u64 value, next;								\
	__u32 dest, i, last, size, len;							\
	long err;									\
											\
	if (!s || !f)									\
		return tail;								\
	dest = f->dest & REC_MASK;							\
	tail &= REC_MASK;								\
											\
	if (f->base == RP_BASE_COMM) {							\
		err = bpf_get_current_comm(&s->rec.bytes[tail], RP_COMM_LEN);		\
		len = err ? 0 : RP_COMM_LEN;						\
		if (!err) {								\
			/* as a string: the length counts up to and with the NUL */	\
			for (i = 0; i < RP_COMM_LEN; i++) {				\
				if (s->rec.bytes[(tail + i) & (2 * RP_MAX_RECORD - 1)] == 0) {	\
					len = i + 1;					\
					break;						\
				}							\
			}								\
		}									\
		*(__u32 *)&s->rec.bytes[dest] = (len << 16) | tail;			\
		return tail + len;							\
	}										\
											\
	if (f->base == RP_BASE_REG)							\
		value = s->regs[f->reg & (RP_REGS_WORDS - 1)] + f->imm;			\
	else										\
		value = f->imm;								\
											\
	last = f->nderef;								\
	if (last > RP_MAX_DEREF)							\
		last = RP_MAX_DEREF;							\
	for (i = 0; i + 1 < last && i < RP_MAX_DEREF; i++) {				\
		if (READ(&next, sizeof(next), (void *)(value + f->deref[i])))		\
			goto fault;							\
		value = next;								\
	}										\
											\
	if (f->store == RP_STORE_STRING) {						\
		if (last)								\
			value += f->deref[(last - 1) & (RP_MAX_DEREF - 1)];		\
		/* One byte more than kept, to tell a string that fits from a longer one */	\
		size = (f->max_len + 1) & REC_MASK;					\
		err = READ_STR(&s->rec.bytes[tail], size, (void *)value);		\
		if (err < 0)								\
			goto fault;							\
		len = err;								\
		if (len > f->max_len) {							\
			s->rec.header.truncated |= 1U << (index & 31);			\
			len = f->max_len & REC_MASK;					\
			if (len)							\
				s->rec.bytes[(tail + len - 1) & (2 * RP_MAX_RECORD - 1)] = 0;	\
		}									\
		*(__u32 *)&s->rec.bytes[dest] = (len << 16) | tail;			\
		return tail + len;							\
	}										\
											\
	size = (__u32)f->size * f->count;						\
	if (last == 0) {								\
		store_int(&s->rec.bytes[dest], value, f->size);				\
		return tail;								\
	}										\
	value += f->deref[(last - 1) & (RP_MAX_DEREF - 1)];				\
	size &= REC_MASK;								\
	if (READ(&s->rec.bytes[dest], size, (void *)value))				\
		goto fault;								\
	return tail;									\
											\
fault:											\
	s->rec.header.faults |= 1U << (index & 31);					\
	if (f->store == RP_STORE_STRING)						\
		*(__u32 *)&s->rec.bytes[dest] = tail; /* zero length */			\
	return tail;									\
}

DEFINE_FETCH(rp_fetch, read_nofault, read_str_nofault)
DEFINE_FETCH(rp_fetch_sleepable, read_faulting, read_str_faulting)

static __always_inline bool compare(__u64 left, const struct rp_predicate *p)
{
	__u64 right = p->value;

	if (p->is_signed) {
		__s64 l = (__s64)left, r = (__s64)right;

		switch (p->cmp) {
		case RP_CMP_EQ: return l == r;
		case RP_CMP_NE: return l != r;
		case RP_CMP_LT: return l < r;
		case RP_CMP_LE: return l <= r;
		case RP_CMP_GT: return l > r;
		case RP_CMP_GE: return l >= r;
		default: return (left & right) != 0;
		}
	}
	switch (p->cmp) {
	case RP_CMP_EQ: return left == right;
	case RP_CMP_NE: return left != right;
	case RP_CMP_LT: return left < right;
	case RP_CMP_LE: return left <= right;
	case RP_CMP_GT: return left > right;
	case RP_CMP_GE: return left >= right;
	default: return (left & right) != 0;
	}
}

static __always_inline __u64 load_int(const __u8 *src, __u32 size, bool is_signed)
{
	switch (size) {
	case 1:
		return is_signed ? (__u64)(__s64) * (__s8 *)src : *(__u8 *)src;
	case 2:
		return is_signed ? (__u64)(__s64) * (__s16 *)src : *(__u16 *)src;
	case 4:
		return is_signed ? (__u64)(__s64) * (__s32 *)src : *(__u32 *)src;
	default:
		return *(__u64 *)src;
	}
}

/* One predicate's truth; a field that could not be read makes every predicate on it false. */
__noinline bool rp_predicate(struct rp_scratch *s, const struct rp_probe *probe, __u32 index)
{
	const struct rp_predicate *p;
	const char *constant;
	__u32 loc, len, offset, i;
	bool negate;

	if (!s || !probe || index >= RP_MAX_PREDICATES)
		return false;
	p = &probe->predicates[index];
	if (p->field < 32 && (s->rec.header.faults & (1U << p->field)))
		return false;
	if (p->op == RP_PRED_CMP)
		return compare(load_int(&s->rec.bytes[p->src & REC_MASK], p->size, p->is_signed), p);

	if (p->size == RP_COMM_LEN) {
		/* A char[RP_COMM_LEN] in the record itself (the header's comm). */
		offset = p->src;
		len = RP_COMM_LEN;
		for (i = 0; i < RP_COMM_LEN; i++) {
			if (s->rec.bytes[(offset + i) & (2 * RP_MAX_RECORD - 1)] == 0) {
				len = i;
				break;
			}
		}
	} else {
		/* A string field: its data_loc gives where, and its length with the NUL. */
		loc = *(__u32 *)&s->rec.bytes[p->src & REC_MASK];
		len = loc >> 16;
		offset = loc & 0xffff;
		if (len == 0)
			return false;
		len -= 1;
	}
	constant = probe->strings[p->str_index & (RP_MAX_STR_CONSTS - 1)];
	negate = p->cmp == RP_CMP_NE;
	if (p->op == RP_PRED_STR_EQ ? len != p->str_len : len < p->str_len)
		return negate;
	for (i = 0; i < RP_STR_CONST_LEN - 1; i++) {
		if (i >= p->str_len)
			break;
		if (s->rec.bytes[(offset + i) & (2 * RP_MAX_RECORD - 1)] != constant[i])
			return negate;
	}
	return !negate;
}

/*
 * Run the filter program: predicates push their truth on a stack of bits, AND/OR/NOT combine
 * the top. Global, so the verifier checks it once, with the values on the stack unknown.
 */
__noinline bool rp_filter(struct rp_scratch *s, const struct rp_probe *probe)
{
	__u64 stack = 0, top;
	__u32 i, op;

	if (!s || !probe)
		return true;
	for (i = 0; i < RP_MAX_PREDICATES; i++) {
		if (i >= probe->npredicates)
			break;
		op = probe->predicates[i].op;
		if (op == RP_PRED_NOT) {
			stack ^= 1;
		} else if (op == RP_PRED_AND || op == RP_PRED_OR) {
			top = stack & 1;
			stack >>= 1;
			if (op == RP_PRED_AND)
				stack &= ~1ULL | top;
			else
				stack |= top;
		} else {
			stack = (stack << 1) | rp_predicate(s, probe, i);
		}
	}
	return stack & 1;
}

/* Counts, sums, minimums, maximums and histogram buckets, per key (per CPU: no contention
 * between CPUs). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384); /* --max-keys */
	__type(key, struct rp_agg_key);
	__type(value, struct rp_agg_value);
} aggregates SEC(".maps");

/* Open spans: when each started (latency: when each thread entered each measured function),
 * by span and matching value. LRU, so spans that never end (longjmp, exit, a lost request)
 * cannot fill it: an evicted one is told from the counters (see rawprobe/_plan/session.py). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct rp_span_key);
	__type(value, struct rp_span_start);
} spans SEC(".maps");

/* Which process each stack id was seen in, so its addresses can be symbolized. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
} stack_pids SEC(".maps");

/* User stacks for aggregations grouped by stack. */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__uint(value_size, RP_STACK_DEPTH * 8);
} stacks SEC(".maps");

static __always_inline __s64 log2_bucket(__s64 value)
{
	__u64 v = value;
	__s64 bucket = 1;

	if (value < 0)
		return -1;
	if (value == 0)
		return 0;
	if (v >> 32) { v >>= 32; bucket += 32; }
	if (v >> 16) { v >>= 16; bucket += 16; }
	if (v >> 8) { v >>= 8; bucket += 8; }
	if (v >> 4) { v >>= 4; bucket += 4; }
	if (v >> 2) { v >>= 2; bucket += 2; }
	if (v >> 1) { bucket += 1; }
	return bucket;
}

static __always_inline __s64 bucket_of(const struct rp_aggregation *agg, __s64 value)
{
	if (agg->hist == RP_HIST_LOG2)
		return log2_bucket(value);
	if (value < agg->lin_min || agg->lin_step <= 0)
		return -1;
	value = (__u64)(value - agg->lin_min) / (__u64)agg->lin_step; /* value >= lin_min here */
	return value < agg->lin_buckets ? value : agg->lin_buckets;
}

/*
 * Copy this probe's grouping key parts from the record into s->key.data (zeroed before, or
 * holding the parts a span's START read). Global, so the verifier checks it once.
 */
__noinline int rp_key_parts(struct rp_scratch *s, const struct rp_probe *probe)
{
	const struct rp_key_part *part;
	__u32 p, loc, len, offset;

	if (!s || !probe)
		return 0;
	for (p = 0; p < RP_MAX_KEYS; p++) {
		part = &probe->agg.keys[p];
		if (part->kind == RP_KEY_NONE)
			break;
		len = part->size;
		offset = part->src;
		if (part->kind == RP_KEY_STRING) {
			/* At most size - 1 bytes: the part's last byte stays the NUL. */
			loc = *(__u32 *)&s->rec.bytes[offset & REC_MASK];
			offset = loc & 0xffff;
			if (len > (loc >> 16) + 1)
				len = (loc >> 16) + 1;
			len -= 1;
		}
		/* The planner keeps dest + size within the key's first RP_KEY_LEN - 8 bytes; the
		 * masks only show the verifier the copy stays inside the scratch space. */
		bpf_probe_read_kernel(&s->key.data[part->dest & (RP_KEY_LEN - 1)],
				      len & (RP_KEY_LEN - 1),
				      &s->rec.bytes[offset & (RP_MAX_RECORD - 1)]);
	}
	return 0;
}

static __always_inline bool less(__s64 a, __s64 b, bool is_signed)
{
	return is_signed ? a < b : (__u64)a < (__u64)b;
}

/* Fold one value into a per-CPU cell. Atomic even on a per-CPU value: uprobe programs are
 * preemptible, and sleepable ones may move to another CPU between the lookup and the add. */
static __always_inline void fold(struct rp_agg_value *cell, const struct rp_aggregation *agg,
				 __s64 value)
{
	__s64 seen;
	int i;

	__sync_fetch_and_add(&cell->count, 1);
	if (!agg->accumulate)
		return;
	__sync_fetch_and_add(&cell->sum, value);
	for (i = 0; i < 8; i++) {
		seen = cell->min;
		if (!less(value, seen, agg->value_signed) ||
		    __sync_val_compare_and_swap(&cell->min, seen, value) == seen)
			break;
	}
	for (i = 0; i < 8; i++) {
		seen = cell->max;
		if (!less(seen, value, agg->value_signed) ||
		    __sync_val_compare_and_swap(&cell->max, seen, value) == seen)
			break;
	}
}

/*
 * Aggregate one hit under s->key (its event, stack and data already set; this probe's key
 * parts are added here). ``value`` is the span's duration for RP_VALUE_SPAN. A global
 * function, so the verifier checks it once. Returns 0, or -1 when the hit could not be
 * counted (map full, value unreadable).
 */
__noinline int rp_aggregate(struct rp_scratch *s, const struct rp_probe *probe, __s64 value)
{
	const struct rp_aggregation *agg;
	struct rp_agg_value *cell, first = {};

	if (!s || !probe)
		return -1;
	agg = &probe->agg;
	rp_key_parts(s, probe);
	if (agg->value == RP_VALUE_FIELD) {
		if (agg->value_field < 32 && (s->rec.header.faults & (1U << agg->value_field)))
			return -1;
		value = load_int(&s->rec.bytes[agg->value_src & REC_MASK], agg->value_size,
				 agg->value_signed);
	}
	s->key.bucket = agg->hist == RP_HIST_NONE ? 0 : bucket_of(agg, value);

	cell = bpf_map_lookup_elem(&aggregates, &s->key);
	if (cell) {
		fold(cell, agg, value);
		return 0;
	}
	first.count = 1;
	if (agg->accumulate)
		first.sum = first.min = first.max = value;
	if (bpf_map_update_elem(&aggregates, &s->key, &first, BPF_NOEXIST)) {
		cell = bpf_map_lookup_elem(&aggregates, &s->key);
		if (!cell)
			return -1; /* the map is full */
		fold(cell, agg, value);
	}
	return 0;
}

/* The span a probe starts or ends, and the value its START and END match on. Returns false
 * when the matching value could not be read. */
static __always_inline bool span_key(struct rp_span_key *key, struct rp_scratch *s,
				     const struct rp_aggregation *agg, __u32 event_id,
				     __u64 pid_tgid, bool end)
{
	key->span_id = agg->span_id;
	if (agg->span_id == RP_SPAN_PAIRED) /* a latency pair: its START is planned first */
		key->span_id = end ? event_id - 1 : event_id;
	key->reserved = 0;
	if (!agg->match_size) {
		key->match = (__u32)pid_tgid;
		return true;
	}
	if (agg->match_field < 32 && (s->rec.header.faults & (1U << agg->match_field)))
		return false;
	key->match = load_int(&s->rec.bytes[agg->match_src & REC_MASK], agg->match_size,
			      agg->match_signed);
	return true;
}

/* Sleepable programs may sleep and move between CPUs: their scratch space is the task's. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct rp_scratch);
} task_scratch SEC(".maps");

/* A span starts: its time, and the key parts only START has, kept until its END. */
static __always_inline void span_start(struct rp_scratch *s, const struct rp_probe *probe,
				       __u32 event_id, __u64 pid_tgid, struct rp_stats *counters)
{
	struct rp_span_start start = {};
	struct rp_span_key key;

	if (!span_key(&key, s, &probe->agg, event_id, pid_tgid, false)) {
		__sync_fetch_and_add(&counters->lost, 1);
		return;
	}
	if (probe->agg.keys[0].kind != RP_KEY_NONE) {
		__builtin_memset(s->key.data, 0, sizeof(s->key.data));
		rp_key_parts(s, probe);
		__builtin_memcpy(start.data, s->key.data, sizeof(start.data));
	}
	start.ts_ns = s->rec.header.ts_ns;
	if (!bpf_map_update_elem(&spans, &key, &start, BPF_NOEXIST))
		return;
	/* One is open already (a recursive call, a reused id): this one replaces it. */
	__sync_fetch_and_add(&counters->replaced, 1);
	if (bpf_map_update_elem(&spans, &key, &start, BPF_ANY))
		__sync_fetch_and_add(&counters->lost, 1);
}

/* A span ends: its duration (between the two hits' header times, as the tracefs backend
 * measures it), with the key parts START read put in s->key.data; -1 when no open span
 * matched (it began before the probes were in place, or was evicted). Inlined: as global
 * functions these cost every program a copy to load. */
static __always_inline __s64 span_end(struct rp_scratch *s, const struct rp_probe *probe,
				      __u32 event_id, __u64 pid_tgid, struct rp_stats *counters)
{
	struct rp_span_start *start = NULL;
	struct rp_span_key key;
	__s64 duration;

	if (span_key(&key, s, &probe->agg, event_id, pid_tgid, true))
		start = bpf_map_lookup_elem(&spans, &key);
	if (!start) {
		__sync_fetch_and_add(&counters->unmatched, 1);
		return -1;
	}
	duration = s->rec.header.ts_ns - start->ts_ns;
	__builtin_memcpy(s->key.data, start->data, sizeof(start->data));
	*(__u64 *)&s->key.data[RP_KEY_LEN - 8] = 0;
	bpf_map_delete_elem(&spans, &key);
	return duration < 0 ? 0 : duration;
}

/* Write the record into the ring buffer, with the user stack when the probe carries one. */
static __always_inline void emit(struct pt_regs *ctx, struct rp_scratch *s,
				 const struct rp_probe *probe, __u32 tail, struct rp_stats *counters)
{
	tail &= REC_MASK;
	if (probe->flags & RP_PROBE_STACK) {
		/* At a function's entry, leave room for the caller between the first frame (the
		 * probed address) and the rest. */
		__u32 gap = (probe->flags & RP_PROBE_AT_ENTRY) ? 8 : 0;
		__u32 start = (tail + gap) & REC_MASK;
		long size = bpf_get_stack(ctx, &s->rec.bytes[start], (RP_STACK_DEPTH - 1) * 8,
					  BPF_F_USER_STACK);

		if (size < 0)
			size = 0;
		if (gap && size >= 16) {
			__u64 caller = 0;

			bpf_probe_read_user(&caller, sizeof(caller), (void *)s->regs[RP_SP_WORD]);
			/* Kernels since 6.13 add the caller themselves when the first instruction
			 * is push %rbp or endbr64; add it when they did not. */
			if (*(__u64 *)&s->rec.bytes[(start + 8) & REC_MASK] != caller) {
				*(__u64 *)&s->rec.bytes[tail] = *(__u64 *)&s->rec.bytes[start];
				*(__u64 *)&s->rec.bytes[start] = caller;
				start = tail;
				size += 8;
			}
		}
		*(__u32 *)&s->rec.bytes[probe->stack_dest & REC_MASK] = ((__u32)size << 16) | start;
		tail = start + size;
	}
	tail &= REC_MASK;
	if (tail < sizeof(struct rp_header))
		tail = sizeof(struct rp_header);
	if (bpf_ringbuf_output(&events, s->rec.bytes, tail, 0))
		__sync_fetch_and_add(&counters->lost, 1);
}

/* The stack id of an aggregation grouped by stack (-1 otherwise); at a function's entry the
 * caller goes into the key's last 8 bytes (RP_PROBE_AT_ENTRY). Stack maps are not for
 * sleepable programs: rawprobe runs probes grouped by stack on the non-sleepable ones. */
static __always_inline __s32 key_stack(struct pt_regs *ctx, struct rp_scratch *s,
				       const struct rp_probe *probe, const bool sleepable,
				       __u64 pid_tgid)
{
	__u32 tgid = pid_tgid >> 32;
	__s32 stack_id;

	if (sleepable || !probe->agg.by_stack)
		return -1;
	stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
	if (stack_id < 0)
		return -1;
	bpf_map_update_elem(&stack_pids, &stack_id, &tgid, BPF_ANY);
	if (probe->flags & RP_PROBE_AT_ENTRY)
		bpf_probe_read_user(&s->key.data[RP_KEY_LEN - 8], 8, (void *)s->regs[RP_SP_WORD]);
	return stack_id;
}

_Static_assert(sizeof(struct pt_regs) / 8 <= RP_FUNC_IP_WORD, "pt_regs overlaps the function's address");

static __always_inline int run_probe(struct pt_regs *ctx, const bool sleepable, const bool ret)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 event_id = (__u32)cookie;
	__u32 config_id = (__u32)(cookie >> 32) & ~RP_COOKIE_TALLY;
	__u32 zero = 0, nest = 0, slot, tail, i;
	const struct rp_probe *probe;
	struct rp_stats *counters;
	struct rp_scratch *s;
	__u32 *depth = NULL;
	__u64 pid_tgid;
	__s64 value = 0;

	pid_tgid = bpf_get_current_pid_tgid();
	if ((__u32)(pid_tgid >> 32) == rp_settings.self_tgid)
		return 0;
	if (rp_settings.follow) {
		__u32 tgid = pid_tgid >> 32;
		__u8 *state = bpf_map_lookup_elem(&followed, &tgid);

		if (!state || *state != FOLLOW_TRACED)
			return 0;
	}

	counters = bpf_map_lookup_elem(&stats, &event_id);
	if (!counters)
		return 0;
	__sync_fetch_and_add(&counters->hits, 1);
	/* Counting calls, nothing more: the hit counter above is the answer. */
	if (cookie >> 32 & RP_COOKIE_TALLY)
		return 0;
	probe = bpf_map_lookup_elem(&probes, &config_id);
	if (!probe)
		return 0;

	if (sleepable) {
		s = bpf_task_storage_get(&task_scratch, bpf_get_current_task_btf(), 0,
					 BPF_LOCAL_STORAGE_GET_F_CREATE);
	} else {
		/* Uprobe programs run preemptible (only migration is disabled), so another task
		 * may run one on this CPU before this one ends: each takes its own level of the
		 * scratch space. */
		depth = bpf_map_lookup_elem(&nesting, &zero);
		if (!depth)
			return 0;
		nest = __sync_fetch_and_add(depth, 1);
		slot = bpf_get_smp_processor_id() * RP_MAX_NEST + nest;
		s = nest < RP_MAX_NEST ? bpf_map_lookup_elem(&scratch, &slot) : NULL;
	}
	if (!s) {
		__sync_fetch_and_add(&counters->lost, 1);
		goto out;
	}

	/* The context is struct pt_regs; copy it as words so fields can index registers. */
#pragma unroll
	for (i = 0; i < sizeof(struct pt_regs) / 8; i++)
		s->regs[i] = ((__u64 *)ctx)[i];
	if (ret)
		s->regs[RP_FUNC_IP_WORD] = bpf_get_func_ip(ctx);

	s->rec.header.ts_ns = bpf_ktime_get_ns();
	s->rec.header.pid = pid_tgid >> 32;
	s->rec.header.tid = (__u32)pid_tgid;
	s->rec.header.event_id = event_id;
	s->rec.header.cpu = bpf_get_smp_processor_id();
	s->rec.header.faults = 0;
	s->rec.header.truncated = 0;
	bpf_get_current_comm(s->rec.header.comm, sizeof(s->rec.header.comm));

	tail = probe->fixed_size;
	for (i = 0; i < RP_MAX_FIELDS; i++) {
		if (i >= probe->nfields)
			break;
		if (sleepable)
			tail = rp_fetch_sleepable(s, &probe->fields[i], i, tail);
		else
			tail = rp_fetch(s, &probe->fields[i], i, tail);
	}

	if (rp_settings.filters && probe->npredicates && !rp_filter(s, probe)) {
		__sync_fetch_and_add(&counters->filtered, 1);
		goto out;
	}

	switch (rp_settings.aggregates ? probe->agg.action : RP_ACTION_STREAM) {
	case RP_ACTION_SPAN_START:
		span_start(s, probe, event_id, pid_tgid, counters);
		goto out;
	case RP_ACTION_SPAN_END:
		value = span_end(s, probe, event_id, pid_tgid, counters);
		if (value < 0)
			goto out;
		if (!probe->agg.duration_dest)
			goto aggregate; /* under the key parts START read */
		*(__s64 *)&s->rec.bytes[probe->agg.duration_dest & REC_MASK] = value;
		/* fall through: streamed, the duration in END's record */
	case RP_ACTION_STREAM:
		emit(ctx, s, probe, tail, counters);
		goto out;
	case RP_ACTION_TALLY:
		/* A filtered plain count: the hit counter less the filtered counter is the answer;
		 * counting the hit again in the aggregates map would count it twice. */
		goto out;
	default:
		__builtin_memset(s->key.data, 0, sizeof(s->key.data));
		break;
	}
aggregate:
	s->key.event_id = event_id;
	s->key.stack_id = key_stack(ctx, s, probe, sleepable, pid_tgid);
	if (rp_aggregate(s, probe, value))
		__sync_fetch_and_add(&counters->lost, 1);
out:
	if (depth)
		__sync_fetch_and_add(depth, -1);
	return 0;
}

SEC("uprobe")
int rp_entry(struct pt_regs *ctx)
{
	return run_probe(ctx, false, false);
}

SEC("uretprobe")
int rp_return(struct pt_regs *ctx)
{
	return run_probe(ctx, false, true);
}

/* Does nothing: the cost of a uprobe with a BPF program, and nothing else (benchmarks). */
SEC("uprobe")
int rp_empty(struct pt_regs *ctx)
{
	return 0;
}

/*
 * The same programs for uprobe_multi links (one link, many uprobes: Linux 6.6+). libbpf
 * before 1.3 has no section name for them; rawprobe sets their expected attach type
 * (BPF_TRACE_UPROBE_MULTI) before loading.
 */
SEC("uprobe")
int rp_entry_multi(struct pt_regs *ctx)
{
	return run_probe(ctx, false, false);
}

SEC("uretprobe")
int rp_return_multi(struct pt_regs *ctx)
{
	return run_probe(ctx, false, true);
}

SEC("uprobe.s")
int rp_entry_multi_sleepable(struct pt_regs *ctx)
{
	return run_probe(ctx, true, false);
}

SEC("uretprobe.s")
int rp_return_multi_sleepable(struct pt_regs *ctx)
{
	return run_probe(ctx, true, true);
}

SEC("uprobe.s")
int rp_entry_sleepable(struct pt_regs *ctx)
{
	return run_probe(ctx, true, false);
}

SEC("uretprobe.s")
int rp_return_sleepable(struct pt_regs *ctx)
{
	return run_probe(ctx, true, true);
}

SEC("tp_btf/sched_process_fork")
int rp_fork(unsigned long long *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx[0];
	struct task_struct *child = (struct task_struct *)ctx[1];
	__u32 parent_tgid = parent->tgid, child_tgid = child->tgid;
	__u8 traced = FOLLOW_TRACED, *state;

	if (child_tgid == parent_tgid)
		return 0; /* a new thread: its process is already in the set or not */
	state = bpf_map_lookup_elem(&followed, &parent_tgid);
	if (state && *state == FOLLOW_TRACED)
		bpf_map_update_elem(&followed, &child_tgid, &traced, BPF_ANY);
	return 0;
}

/* The command becomes traced when it execs (before that it is rawprobe's own child). */
SEC("tp_btf/sched_process_exec")
int rp_exec(unsigned long long *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx[0];
	__u32 tgid = task->tgid;
	__u8 traced = FOLLOW_TRACED, *state;

	state = bpf_map_lookup_elem(&followed, &tgid);
	if (state && *state == FOLLOW_ARMED)
		bpf_map_update_elem(&followed, &tgid, &traced, BPF_EXIST);
	return 0;
}

/* A process leaves the set when its thread-group leader exits. */
SEC("tp_btf/sched_process_exit")
int rp_exit(unsigned long long *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx[0];
	__u32 tgid = task->tgid;

	if (task->pid == task->tgid)
		bpf_map_delete_elem(&followed, &tgid);
	return 0;
}

/* System calls and tracepoints (sys:, tp:). */
#include "kernel.bpf.c"
