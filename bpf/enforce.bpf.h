/* Shared by the enforcement programs (netpolicy, lsm, seccomp_watch) and mirrored in agent/enforce-maps.ts:
 * mode values, layer ids and the violation record every layer writes to its ring buffer. */
#ifndef PAHLEVAN_ENFORCE_COMMON_H
#define PAHLEVAN_ENFORCE_COMMON_H

/* Mode per container and layer; switched live by rewriting one map value (no reload). */
#define PV_MODE_OFF 0
#define PV_MODE_MONITOR 1 /* allow, count, report */
#define PV_MODE_ENFORCE 2 /* deny, count, report */
#define PV_MODE_ALERT 3   /* deny, count, report flagged as an alert */

/* What was denied (event kind). */
#define PV_KIND_CONNECT 1
#define PV_KIND_BIND 2
#define PV_KIND_INGRESS 3
#define PV_KIND_SENDMSG 4
#define PV_KIND_FILE 5
#define PV_KIND_EXEC 6
#define PV_KIND_SYSCALL 7

/* Verdict recorded in an event. */
#define PV_VERDICT_ALLOWED 0 /* Monitor: would have been denied */
#define PV_VERDICT_DENIED 1

#define PV_MAX_CONTAINERS 16384

static __always_inline int pv_denies(__u32 mode)
{
	return mode == PV_MODE_ENFORCE || mode == PV_MODE_ALERT;
}

#endif
