// Small helpers for tests that talk to the stand-in API server through @kubernetes/client-node.
import { setTimeout as sleep } from 'node:timers/promises';

export interface StatusBody {
  kind: string;
  status: string;
  reason: string;
  message: string;
  code: number;
  details?: { name?: string; kind?: string; group?: string };
}

/** Awaits a call expected to fail with an API error; returns its HTTP code and the parsed Status body. */
export async function apiErrorOf(call: Promise<unknown>): Promise<{ code: number; status: StatusBody }> {
  try {
    await call;
  } catch (e) {
    const err = e as { code?: number; body?: unknown };
    if (typeof err.code !== 'number') throw e;
    const status = (typeof err.body === 'string' ? JSON.parse(err.body) : err.body) as StatusBody;
    return { code: err.code, status };
  }
  throw new Error('expected the API call to fail, it succeeded');
}

/** Polls until `condition` holds; fails with `what` after `timeoutMs` (a hang guard, not a timing assertion). */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}
