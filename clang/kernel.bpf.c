// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * rawprobe's kernel-side programs: system calls (sys:) and tracepoints (tp:). Included at the
 * end of rawprobe.bpf.c: one object, whose maps (probes, stats, scratch, events, followed,
 * aggregates, stacks) and global functions (rp_filter, rp_aggregate) these programs share.
 *
 * System calls: rp_sys_enter and rp_sys_exit, on the raw syscall tracepoints (tp_btf: the
 * cheapest way in, no record is built for the programs), serve every system call. The
 * `syscalls` array, indexed by number, says which are probed. At entry the time, the number
 * and the six argument registers go to the thread's task storage; at exit the call is counted
 * (rawprobe syscalls) or one record is made from them (struct rp_probe fields over the
 * registers: arguments 0-5, return value, duration), then filtered and streamed or aggregated
 * like a uprobe's. Memory is read at exit: the kernel has faulted in what the call read (a
 * path, a write's buffer) and written what it returned (a read's buffer). execve is the
 * exception: at exit the old memory is gone, so its strings are read at entry and kept; one
 * that could not be read then (a page never touched) is read at exit from the new program's
 * stack, where the kernel copied the arguments (fs/exec.c: the file name above the
 * environment, mm->env_end; the arguments in mm->arg_start..arg_end).
 *
 * Tracepoints: rp_tracepoint, a perf-event tracepoint program with a cookie per event as for
 * uprobes, reads its fields from the record the kernel made (RP_BASE_RECORD: the record's
 * address is in regs[0]).
 */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RP_SYS_MAX);
	__type(key, __u32);
	__type(value, struct rp_syscall);
} syscalls SEC(".maps");

/* A system call in flight, per thread. */
struct rp_sys_entry {
	__u64 ts;     /* entry time; 0: none in flight */
	__u32 nr;
	__u16 armed;  /* an execve of the command while it is still rawprobe's child */
	__u16 traced; /* the thread's process is traced: it stays so until it exits */
	__u64 args[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct rp_sys_entry);
} sys_entries SEC(".maps");

/* An execve's record as far as entry could make it (its strings), kept to exit. */
struct rp_exec_stash {
	__u32 tail;
	__u32 reserved;
	__u8 bytes[RP_EXEC_STASH];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct rp_exec_stash);
} exec_stashes SEC(".maps");

/* rawprobe syscalls: per system call number, summed over CPUs by the reader. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RP_SYS_MAX);
	__type(key, __u32);
	__type(value, struct rp_sys_totals);
} sys_totals SEC(".maps");

/* rawprobe syscalls --by pid. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384); /* --max-keys */
	__type(key, struct rp_sys_key);
	__type(value, struct rp_sys_totals);
} sys_totals_by_pid SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rp_kernel_filter);
} kernel_filter SEC(".maps");

#define RP_MAX_ERRNO 4095 /* include/linux/err.h */
#define RP_USER32_CS 0x23 /* arch/x86/include/asm/segment.h: __USER32_CS, a 32-bit process */

/* Whether the current process is traced: 1 yes, 0 no, 2 not yet (the command, armed). */
static __always_inline int kernel_traced(__u32 tgid)
{
	struct rp_kernel_filter *filter;
	__u32 zero = 0;
	__u8 *state;

	if (tgid == rp_settings.self_tgid)
		return 0;
	if (!rp_settings.follow) {
		filter = bpf_map_lookup_elem(&kernel_filter, &zero);
		if (!filter || !filter->pids)
			return 1;
	}
	state = bpf_map_lookup_elem(&followed, &tgid);
	if (!state)
		return 0;
	return *state == FOLLOW_TRACED ? 1 : *state == FOLLOW_ARMED ? 2 : 0;
}

/* This CPU's next level of scratch space, as run_probe takes it; the caller gives it back. */
static __always_inline struct rp_scratch *take_scratch(__u32 **depth)
{
	__u32 zero = 0, nest, slot;

	*depth = bpf_map_lookup_elem(&nesting, &zero);
	if (!*depth)
		return NULL;
	nest = __sync_fetch_and_add(*depth, 1);
	slot = bpf_get_smp_processor_id() * RP_MAX_NEST + nest;
	return nest < RP_MAX_NEST ? bpf_map_lookup_elem(&scratch, &slot) : NULL;
}

static __always_inline void give_scratch(__u32 *depth)
{
	if (depth)
		__sync_fetch_and_add(depth, -1);
}

static __always_inline void fill_header(struct rp_scratch *s, __u64 ts, __u64 pid_tgid,
					__u32 event_id)
{
	s->rec.header.ts_ns = ts;
	s->rec.header.pid = pid_tgid >> 32;
	s->rec.header.tid = (__u32)pid_tgid;
	s->rec.header.event_id = event_id;
	s->rec.header.cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(s->rec.header.comm, sizeof(s->rec.header.comm));
}

static __always_inline long read_memory(void *dst, __u32 size, __u64 src, bool kernel)
{
	return kernel ? bpf_probe_read_kernel(dst, size, (void *)src)
		      : bpf_probe_read_user(dst, size, (void *)src);
}

/* A string's length with its NUL, cut (and marked) at max_len; writes the data_loc. */
static __always_inline __u32 keep_string(struct rp_scratch *s, const struct rp_field *f,
					 __u32 index, __u32 dest, __u32 tail, long len)
{
	if (len > f->max_len) {
		s->rec.header.truncated |= 1U << (index & 31);
		len = f->max_len & REC_MASK;
		if (len)
			s->rec.bytes[(tail + len - 1) & (2 * RP_MAX_RECORD - 1)] = 0;
	}
	*(__u32 *)&s->rec.bytes[dest & REC_MASK] = ((__u32)len << 16) | tail;
	return tail + len;
}

/*
 * argv: up to f->count strings of the NULL-terminated array at `array`, appended one after
 * another with their NULs, f->max_len bytes in all. An element that cannot be read makes the
 * whole field unreadable.
 */
__noinline int rp_string_array(struct rp_scratch *s, const struct rp_field *f, __u32 index,
			       __u32 tail, __u64 array)
{
	__u32 dest, start, used = 0, room, i;
	__u64 pointer;
	long len;

	if (!s || !f)
		return tail;
	dest = f->dest & REC_MASK;
	start = tail & REC_MASK;
	for (i = 0; i <= RP_ARGV_MAX; i++) {
		if (bpf_probe_read_user(&pointer, sizeof(pointer), (void *)(array + 8 * i)))
			goto fault;
		if (!pointer)
			break;
		if (i >= f->count || used >= f->max_len) {
			s->rec.header.truncated |= 1U << (index & 31);
			break;
		}
		room = (f->max_len - used + 1) & REC_MASK;
		len = bpf_probe_read_user_str(&s->rec.bytes[(start + used) & REC_MASK], room,
					      (void *)pointer);
		if (len <= 0)
			goto fault;
		if (len >= room) {
			/* cut: keep what fits, NUL-terminated */
			s->rec.header.truncated |= 1U << (index & 31);
			used = f->max_len;
			break;
		}
		used += len;
	}
	*(__u32 *)&s->rec.bytes[dest] = ((used & 0xffff) << 16) | start;
	return start + (used & REC_MASK);
fault:
	s->rec.header.faults |= 1U << (index & 31);
	*(__u32 *)&s->rec.bytes[dest] = start;
	return start;
}

/*
 * Fetch one field of a kernel-side probe into the record; returns the new end of the record.
 * RP_BASE_REG values are the system call's registers, and what they point to is user memory;
 * RP_BASE_RECORD values are a tracepoint record's fields, kernel memory, and what a field of
 * it points to is read as user memory first (system call arguments), then as kernel memory.
 */
__noinline int rp_kernel_fetch(struct rp_scratch *s, const struct rp_field *f, __u32 index,
			       __u32 tail)
{
	__u64 value, next, length;
	__u32 dest, i, last, size, loc;
	bool kernel, from_record;
	long len;

	if (!s || !f)
		return tail;
	dest = f->dest & REC_MASK;
	tail &= REC_MASK;
	from_record = f->base == RP_BASE_RECORD;
	kernel = from_record;
	value = s->regs[f->reg & (RP_REGS_WORDS - 1)] + f->imm;

	last = f->nderef;
	if (last > RP_MAX_DEREF)
		last = RP_MAX_DEREF;
	for (i = 0; i + 1 < last && i < RP_MAX_DEREF; i++) {
		if (read_memory(&next, sizeof(next), value + f->deref[i], kernel))
			goto fault;
		value = next;
		kernel = false;
	}
	if (last)
		value += f->deref[(last - 1) & (RP_MAX_DEREF - 1)];

	switch (f->store) {
	case RP_STORE_INT:
		if (last == 0) {
			store_int(&s->rec.bytes[dest], value, f->size);
			return tail;
		}
		size = ((__u32)f->size * f->count) & REC_MASK;
		if (read_memory(&s->rec.bytes[dest], size, value, kernel))
			goto fault;
		return tail;
	case RP_STORE_DATA_LOC:
		/* value: where the record's u32 __data_loc is; offsets are from the record */
		if (bpf_probe_read_kernel(&loc, sizeof(loc), (void *)value))
			goto fault;
		value = s->regs[f->reg & (RP_REGS_WORDS - 1)] + (loc & 0xffff);
		size = (f->max_len + 1) & REC_MASK;
		len = bpf_probe_read_kernel_str(&s->rec.bytes[tail], size, (void *)value);
		if (len < 0)
			goto fault;
		return keep_string(s, f, index, dest, tail, len);
	case RP_STORE_STRING:
		size = (f->max_len + 1) & REC_MASK;
		if (kernel)
			len = bpf_probe_read_kernel_str(&s->rec.bytes[tail], size, (void *)value);
		else
			len = bpf_probe_read_user_str(&s->rec.bytes[tail], size, (void *)value);
		if (len < 0 && from_record && !kernel)
			len = bpf_probe_read_kernel_str(&s->rec.bytes[tail], size, (void *)value);
		if (len < 0)
			goto fault;
		return keep_string(s, f, index, dest, tail, len);
	case RP_STORE_BUFFER:
		length = s->regs[f->count & (RP_REGS_WORDS - 1)];
		if ((__s64)length < 0)
			length = 0;
		if (length > f->max_len) {
			s->rec.header.truncated |= 1U << (index & 31);
			length = f->max_len;
		}
		size = length & REC_MASK;
		if (size && read_memory(&s->rec.bytes[tail], size, value, kernel))
			goto fault;
		*(__u32 *)&s->rec.bytes[dest] = (size << 16) | tail;
		return tail + size;
	case RP_STORE_STRING_ARRAY:
		return rp_string_array(s, f, index, tail, value);
	default:
		return tail;
	}

fault:
	s->rec.header.faults |= 1U << (index & 31);
	if (f->store != RP_STORE_INT)
		*(__u32 *)&s->rec.bytes[dest] = tail; /* zero length */
	return tail;
}

/*
 * A string field of an execve that could not be read at entry, read at a successful exit from
 * where the kernel copied it onto the new program's stack (fs/exec.c, do_execveat_common():
 * the file name first, at the top, then the environment, then the arguments below them).
 */
__noinline int rp_exec_refetch(struct rp_scratch *s, const struct rp_field *f, __u32 index,
			       __u32 tail)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct mm_struct *mm = task->mm;
	__u64 start, end;
	__u32 dest, size;
	long len;

	if (!s || !f || !mm)
		return tail;
	dest = f->dest & REC_MASK;
	tail &= REC_MASK;
	if (f->store == RP_STORE_STRING) {
		size = (f->max_len + 1) & REC_MASK;
		len = bpf_probe_read_user_str(&s->rec.bytes[tail], size, (void *)mm->env_end);
		if (len < 0)
			return tail;
		s->rec.header.faults &= ~(1U << (index & 31));
		return keep_string(s, f, index, dest, tail, len);
	}
	start = mm->arg_start;
	end = mm->arg_end;
	if (end <= start)
		return tail;
	if (end - start > f->max_len) {
		s->rec.header.truncated |= 1U << (index & 31);
		end = start + f->max_len;
	}
	size = (end - start) & REC_MASK;
	if (bpf_probe_read_user(&s->rec.bytes[tail], size, (void *)start))
		return tail;
	s->rec.header.faults &= ~(1U << (index & 31));
	*(__u32 *)&s->rec.bytes[dest] = (size << 16) | tail;
	return tail + size;
}

/* Aggregate a kernel-side probe's hit under its event, its stack when grouped by one, and
 * its key parts; ``value`` is a system call's duration (RP_VALUE_SPAN). */
static __always_inline void kernel_aggregate(void *ctx, struct rp_scratch *s,
					     const struct rp_probe *probe,
					     struct rp_stats *counters, __u32 event_id,
					     __s64 value, __u32 tgid)
{
	__s32 stack_id = -1;

	__builtin_memset(s->key.data, 0, sizeof(s->key.data));
	if (probe->agg.by_stack) {
		stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
		if (stack_id >= 0)
			bpf_map_update_elem(&stack_pids, &stack_id, &tgid, BPF_ANY);
		else
			stack_id = -1;
	}
	s->key.event_id = event_id;
	s->key.stack_id = stack_id;
	if (rp_aggregate(s, probe, value))
		__sync_fetch_and_add(&counters->lost, 1);
}

/* What a kernel-side probe does with a record that passed its filter. */
static __always_inline void kernel_action(void *ctx, struct rp_scratch *s,
					  const struct rp_probe *probe,
					  struct rp_stats *counters, __u32 event_id, __u32 tail,
					  __s64 latency, __u32 tgid)
{
	switch (probe->agg.action) {
	case RP_ACTION_STREAM:
		tail &= REC_MASK;
		if (probe->flags & RP_PROBE_STACK) {
			long size = bpf_get_stack(ctx, &s->rec.bytes[tail], (RP_STACK_DEPTH - 1) * 8,
						  BPF_F_USER_STACK);

			if (size < 0)
				size = 0;
			*(__u32 *)&s->rec.bytes[probe->stack_dest & REC_MASK] =
				((__u32)size << 16) | tail;
			tail += size;
		}
		tail &= REC_MASK;
		if (tail < sizeof(struct rp_header))
			tail = sizeof(struct rp_header);
		if (bpf_ringbuf_output(&events, s->rec.bytes, tail, 0))
			__sync_fetch_and_add(&counters->lost, 1);
		break;
	case RP_ACTION_AGGREGATE:
		kernel_aggregate(ctx, s, probe, counters, event_id, latency, tgid);
		break;
	default: /* RP_ACTION_TALLY: the hit counter is the count; spans are uprobes' only */
		break;
	}
}

/* rawprobe syscalls: one more call of `nr`. */
static __always_inline void add_totals(const struct rp_syscall *sc, __u32 nr, __s64 ret,
				       __u64 duration)
{
	struct rp_sys_totals *totals;

	if (sc->flags & RP_SYS_BY_PID) {
		struct rp_sys_key key = {.nr = nr, .pid = bpf_get_current_pid_tgid() >> 32};
		struct rp_sys_totals zero = {};

		totals = bpf_map_lookup_elem(&sys_totals_by_pid, &key);
		if (!totals) {
			bpf_map_update_elem(&sys_totals_by_pid, &key, &zero, BPF_NOEXIST);
			totals = bpf_map_lookup_elem(&sys_totals_by_pid, &key);
		}
		if (!totals) {
			struct rp_stats *counters = bpf_map_lookup_elem(&stats, &sc->event_id);

			if (counters)
				__sync_fetch_and_add(&counters->lost, 1); /* the map is full */
			return;
		}
	} else {
		totals = bpf_map_lookup_elem(&sys_totals, &nr);
		if (!totals)
			return;
	}
	/* Atomic even per CPU: these programs may be preempted (faultable tracepoints). */
	__sync_fetch_and_add(&totals->calls, 1);
	if (ret < 0 && ret >= -RP_MAX_ERRNO)
		__sync_fetch_and_add(&totals->errors, 1);
	__sync_fetch_and_add(&totals->total_ns, duration);
}

static __always_inline bool is_string_store(const struct rp_field *f)
{
	return f->store == RP_STORE_STRING || f->store == RP_STORE_STRING_ARRAY;
}

#if defined(__TARGET_ARCH_x86)
/* arch/x86/entry/entry_64.S: arguments in rdi, rsi, rdx, r10, r8, r9. */
static __always_inline void syscall_args(const struct pt_regs *regs, __u64 *args)
{
	args[0] = regs->di;
	args[1] = regs->si;
	args[2] = regs->dx;
	args[3] = regs->r10;
	args[4] = regs->r8;
	args[5] = regs->r9;
}

/* A 32-bit process's system calls have other numbers: the kernel's own syscall events leave
 * them out too (kernel/trace/trace_syscalls.c, arch_trace_is_compat_syscall()). */
static __always_inline bool compat_syscall(const struct pt_regs *regs)
{
	return regs->cs == RP_USER32_CS;
}
#else
#error "rawprobe's system call programs know only x86_64's registers"
#endif

/*
 * Make, filter and hand on one system call's record: at exit, or at entry for a call that
 * does not return (exit_group) and for an execve's strings (stash_only).
 */
static __always_inline int sys_event(void *ctx, const struct rp_syscall *sc, const __u64 *args,
				     __u32 nr, __s64 ret, __u64 start, __u64 duration,
				     __u64 pid_tgid, struct rp_exec_stash *stash, bool stash_only)
{
	__u32 event_id = sc->event_id, config_id = sc->config_id, tail, i, faults, truncated;
	const struct rp_probe *probe;
	struct rp_stats *counters;
	struct rp_scratch *s;
	__u32 *depth = NULL;
	bool from_stash = false;

	counters = bpf_map_lookup_elem(&stats, &event_id);
	if (!counters)
		return 0;
	if (!stash_only) {
		__sync_fetch_and_add(&counters->hits, 1);
		if (sc->flags & RP_SYS_TALLY)
			return 0;
	}
	probe = bpf_map_lookup_elem(&probes, &config_id);
	if (!probe)
		return 0;
	s = take_scratch(&depth);
	if (!s) {
		__sync_fetch_and_add(&counters->lost, 1);
		goto out;
	}
	for (i = 0; i < 6; i++)
		s->regs[i] = args[i];
	s->regs[RP_SYS_REG_RET] = ret;
	s->regs[RP_SYS_REG_DURATION] = duration;
	s->regs[RP_SYS_REG_NR] = nr;
	s->rec.header.faults = 0;
	s->rec.header.truncated = 0;
	tail = probe->fixed_size;

	if (stash_only) {
		/* execve at entry: its strings, kept for the exit */
		for (i = 0; i < RP_MAX_FIELDS; i++) {
			if (i >= probe->nfields)
				break;
			if (is_string_store(&probe->fields[i]))
				tail = rp_kernel_fetch(s, &probe->fields[i], i, tail);
		}
		tail &= REC_MASK;
		if (tail > RP_EXEC_STASH)
			tail = RP_EXEC_STASH;
		if (stash && !bpf_probe_read_kernel(stash->bytes, tail, s->rec.bytes))
			stash->tail = tail;
		goto out;
	}
	if (stash && stash->tail) {
		tail = stash->tail;
		if (tail > RP_EXEC_STASH)
			tail = RP_EXEC_STASH;
		if (!bpf_probe_read_kernel(s->rec.bytes, tail, stash->bytes))
			from_stash = true;
		else
			tail = probe->fixed_size;
		stash->tail = 0;
	}
	faults = s->rec.header.faults;
	truncated = s->rec.header.truncated;
	fill_header(s, start, pid_tgid, event_id);
	s->rec.header.faults = faults;
	s->rec.header.truncated = truncated;
	for (i = 0; i < RP_MAX_FIELDS; i++) {
		const struct rp_field *f;

		if (i >= probe->nfields)
			break;
		f = &probe->fields[i];
		if (from_stash && is_string_store(f)) {
			if (ret == 0 && (s->rec.header.faults & (1U << i)))
				tail = rp_exec_refetch(s, f, i, tail);
			continue;
		}
		tail = rp_kernel_fetch(s, f, i, tail);
	}
	if (probe->npredicates && !rp_filter(s, probe)) {
		__sync_fetch_and_add(&counters->filtered, 1);
		goto out;
	}
	if (sc->flags & RP_SYS_SUMMARY) {
		add_totals(sc, nr, ret, duration);
		if (probe->agg.action == RP_ACTION_AGGREGATE)
			kernel_aggregate(ctx, s, probe, counters, event_id, duration, pid_tgid >> 32);
		goto out;
	}
	kernel_action(ctx, s, probe, counters, event_id, tail, duration, pid_tgid >> 32);
out:
	give_scratch(depth);
	return 0;
}

SEC("tp_btf/sys_enter")
int rp_sys_enter(unsigned long long *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx[0];
	__u32 nr = ctx[1], armed = 0;
	const struct rp_syscall *sc;
	struct rp_sys_entry *entry;
	struct task_struct *task;
	int traced;

	sc = bpf_map_lookup_elem(&syscalls, &nr); /* none for -1 (no system call), x32's */
	if (!sc || !(sc->flags & RP_SYS_TRACED))
		return 0;
	task = bpf_get_current_task_btf();
	entry = bpf_task_storage_get(&sys_entries, task, 0, 0);
	if (!entry || !entry->traced) {
		/* Asked once per thread: a traced process stays traced until it exits. */
		traced = kernel_traced(bpf_get_current_pid_tgid() >> 32);
		if (traced != 1) {
			/* The command's execve comes before it is traced: it counts if it works. */
			if (traced != 2 || !(sc->flags & RP_SYS_EXEC))
				return 0;
			armed = 1;
		}
		if (!(sc->flags & RP_SYS_NO_RETURN) || !armed)
			entry = bpf_task_storage_get(&sys_entries, task, 0,
						     BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!entry) {
			struct rp_stats *counters = bpf_map_lookup_elem(&stats, &sc->event_id);

			if (counters)
				__sync_fetch_and_add(&counters->lost, 1);
			return 0;
		}
		entry->traced = !armed;
	}
	if (compat_syscall(regs))
		return 0;
	if (sc->flags & RP_SYS_NO_RETURN) {
		__u64 args[6];

		/* Totals count calls that end, as strace -c does: exit_group never does. */
		if (sc->flags & RP_SYS_SUMMARY)
			return 0;
		syscall_args(regs, args);
		return sys_event(ctx, sc, args, nr, 0, bpf_ktime_get_ns(), 0,
				 bpf_get_current_pid_tgid(), NULL, false);
	}
	entry->nr = nr;
	entry->armed = armed;
	if (sc->flags & RP_SYS_RECORD)
		syscall_args(regs, entry->args);
	if ((sc->flags & RP_SYS_EXEC) && (sc->flags & RP_SYS_RECORD)) {
		struct rp_exec_stash *stash = bpf_task_storage_get(
			&exec_stashes, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);

		if (stash) {
			stash->tail = 0;
			sys_event(ctx, sc, entry->args, nr, 0, 0, 0, bpf_get_current_pid_tgid(), stash,
				  true);
		}
	}
	entry->ts = bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/sys_exit")
int rp_sys_exit(unsigned long long *ctx)
{
	__s64 ret = (__s64)ctx[1];
	struct rp_exec_stash *stash = NULL;
	const struct rp_syscall *sc;
	struct rp_sys_entry *entry;
	struct task_struct *task;
	__u64 now, start, pid_tgid;
	__u32 nr;
	int result;

	task = bpf_get_current_task_btf();
	entry = bpf_task_storage_get(&sys_entries, task, 0, 0);
	if (!entry || !entry->ts)
		return 0;
	now = bpf_ktime_get_ns();
	start = entry->ts;
	entry->ts = 0;
	nr = entry->nr;
	if (entry->armed && kernel_traced(bpf_get_current_pid_tgid() >> 32) != 1)
		return 0; /* an execve of the command that failed (execvp tries each $PATH entry) */
	sc = bpf_map_lookup_elem(&syscalls, &nr);
	if (!sc)
		return 0;
	if ((sc->flags & (RP_SYS_SUMMARY | RP_SYS_RECORD)) == RP_SYS_SUMMARY) {
		add_totals(sc, nr, ret, now - start);
		return 0;
	}
	pid_tgid = bpf_get_current_pid_tgid();
	if (sc->flags & RP_SYS_EXEC)
		stash = bpf_task_storage_get(&exec_stashes, task, 0, 0);
	result = sys_event(ctx, sc, entry->args, nr, ret, start, now - start, pid_tgid, stash,
			   false);
	if (stash)
		bpf_task_storage_delete(&exec_stashes, task);
	return result;
}

SEC("tracepoint")
int rp_tracepoint(void *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 event_id = (__u32)cookie;
	__u32 config_id = (__u32)(cookie >> 32) & ~RP_COOKIE_TALLY;
	const struct rp_probe *probe;
	struct rp_stats *counters;
	struct rp_scratch *s;
	__u32 *depth = NULL, tail, i;
	__u64 pid_tgid;

	pid_tgid = bpf_get_current_pid_tgid();
	if (kernel_traced(pid_tgid >> 32) != 1)
		return 0;
	counters = bpf_map_lookup_elem(&stats, &event_id);
	if (!counters)
		return 0;
	__sync_fetch_and_add(&counters->hits, 1);
	if (cookie >> 32 & RP_COOKIE_TALLY)
		return 0;
	probe = bpf_map_lookup_elem(&probes, &config_id);
	if (!probe)
		return 0;
	s = take_scratch(&depth);
	if (!s) {
		__sync_fetch_and_add(&counters->lost, 1);
		goto out;
	}
	/* The record's address, for RP_BASE_RECORD fields (kept as a number). */
	s->regs[0] = (__u64)ctx;
	s->rec.header.faults = 0;
	s->rec.header.truncated = 0;
	fill_header(s, bpf_ktime_get_ns(), pid_tgid, event_id);
	tail = probe->fixed_size;
	for (i = 0; i < RP_MAX_FIELDS; i++) {
		if (i >= probe->nfields)
			break;
		tail = rp_kernel_fetch(s, &probe->fields[i], i, tail);
	}
	if (probe->npredicates && !rp_filter(s, probe)) {
		__sync_fetch_and_add(&counters->filtered, 1);
		goto out;
	}
	kernel_action(ctx, s, probe, counters, event_id, tail, 0, pid_tgid >> 32);
out:
	give_scratch(depth);
	return 0;
}
