// Leader election over a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it (client-node 1.4 has
// no helper): optimistic concurrency on the Lease's resourceVersion decides races; a candidate takes over only
// after it has seen the holder's record unchanged for leaseDurationSeconds on its own clock (no clock-skew
// assumptions); the leader gives up when it cannot renew within renewDeadlineMs, before its lease can expire
// for the others; releasing on shutdown clears the holder so a standby takes over at once.
import { CoordinationV1Api, type KubeConfig, type V1Lease } from '@kubernetes/client-node';

export interface LeaderElectionOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSeconds?: number;
  /** The leader steps down when it could not renew for this long (must be below the lease duration). */
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
  onError?: (err: unknown) => void;
  now?: () => number;
}

function statusCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'number' ? code : undefined;
}

export class LeaderElector {
  private readonly api: CoordinationV1Api;
  private readonly leaseDurationSeconds: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly now: () => number;
  private leading = false;
  private stopped = false;
  private timer?: NodeJS.Timeout;
  private lastRenewMs = 0;
  /** The last holder record seen and when (local clock) it was first seen: expiry is judged from that. */
  private observed?: { holder: string; renewTime: string; atMs: number };
  private running?: Promise<void>;

  constructor(private readonly options: LeaderElectionOptions) {
    this.api = options.kubeConfig.makeApiClient(CoordinationV1Api);
    this.leaseDurationSeconds = options.leaseDurationSeconds ?? 15;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    if (this.renewDeadlineMs >= this.leaseDurationSeconds * 1000)
      throw new Error('renewDeadlineMs must be shorter than leaseDurationSeconds');
    this.now = options.now ?? Date.now;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.stopped = false;
    const tick = async () => {
      if (this.stopped) return;
      this.running = this.tryAcquireOrRenew().then(
        () => undefined,
        (err: unknown) => this.options.onError?.(err),
      );
      await this.running;
      if (!this.stopped) this.timer = setTimeout(() => void tick(), this.retryPeriodMs);
    };
    void tick();
  }

  /** Stops campaigning; a leader releases the lease so that another replica can take over immediately. */
  async stop(release = true): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    if (this.leading && release) {
      try {
        const lease = await this.api.readNamespacedLease({
          name: this.options.name,
          namespace: this.options.namespace,
        });
        if (lease.spec?.holderIdentity === this.options.identity)
          await this.api.replaceNamespacedLease({
            name: this.options.name,
            namespace: this.options.namespace,
            body: {
              ...lease,
              spec: {
                ...lease.spec,
                holderIdentity: undefined,
                leaseDurationSeconds: 1,
                renewTime: new Date(this.now()),
              },
            },
          });
      } catch (err) {
        this.options.onError?.(err);
      }
    }
    this.setLeading(false);
  }

  private setLeading(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    if (leading) this.options.onStartedLeading();
    else this.options.onStoppedLeading();
  }

  /** One round: returns whether this replica holds the lease afterwards. */
  async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.options;
    const nowMs = this.now();
    const nowDate = new Date(nowMs);
    let lease: V1Lease | undefined;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (statusCode(err) !== 404) return this.failedRound(err);
    }
    if (!lease) {
      try {
        await this.api.createNamespacedLease({
          namespace,
          body: {
            metadata: { name, namespace },
            spec: {
              holderIdentity: identity,
              leaseDurationSeconds: this.leaseDurationSeconds,
              acquireTime: nowDate,
              renewTime: nowDate,
              leaseTransitions: 0,
            },
          },
        });
        return this.succeeded(nowMs);
      } catch (err) {
        return this.failedRound(err); // 409 AlreadyExists: someone else created it first
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const renewTime = spec.renewTime ? new Date(spec.renewTime).toISOString() : '';
    if (!this.observed || this.observed.holder !== holder || this.observed.renewTime !== renewTime)
      this.observed = { holder, renewTime, atMs: nowMs };
    const durationMs = (spec.leaseDurationSeconds ?? this.leaseDurationSeconds) * 1000;
    const heldByOther = holder !== '' && holder !== identity;
    if (heldByOther && this.observed.atMs + durationMs > nowMs) {
      this.setLeading(false);
      return false;
    }
    const takingOver = holder !== identity;
    try {
      await this.api.replaceNamespacedLease({
        name,
        namespace,
        body: {
          ...lease,
          spec: {
            ...spec,
            holderIdentity: identity,
            leaseDurationSeconds: this.leaseDurationSeconds,
            renewTime: nowDate,
            ...(takingOver
              ? {
                  acquireTime: nowDate,
                  leaseTransitions: (spec.leaseTransitions ?? 0) + (holder === '' ? 0 : 1),
                }
              : {}),
          },
        },
      });
      return this.succeeded(nowMs);
    } catch (err) {
      return this.failedRound(err); // 409 Conflict: another replica wrote first
    }
  }

  private succeeded(nowMs: number): boolean {
    this.lastRenewMs = nowMs;
    this.setLeading(true);
    return true;
  }

  private failedRound(err: unknown): boolean {
    const code = statusCode(err);
    if (code !== 409) this.options.onError?.(err);
    if (this.leading && this.now() - this.lastRenewMs < this.renewDeadlineMs) return true; // still within deadline
    this.setLeading(false);
    return false;
  }
}
