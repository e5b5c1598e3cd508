import { ThawError } from '../util/errors.js';
import type { ConcurrencyStore } from '../control/concurrency-store.js';

const MB = 1024 * 1024;

/**
 * The account's concurrency limit when the operator does not set one: what this machine can run at once. Every
 * invocation needs an environment of at least 128 MB, and one core keeps about 32 mostly-waiting invocations
 * going; never more than Lambda's default of 1,000, never fewer than 10.
 */
export function defaultAccountConcurrency(cpus: number, memoryBytes: number): number {
  return Math.max(10, Math.min(1000, cpus * 32, Math.floor(memoryBytes / (128 * MB))));
}

/**
 * Lambda keeps 100 of an account's concurrency (its default 1,000) unreserved for the functions without a
 * reservation; smaller accounts get a smaller floor. Thaw keeps a tenth of its limit, at least 1, at most 100.
 */
export const minimumUnreserved = (accountLimit: number): number => Math.min(100, Math.max(1, Math.ceil(accountLimit / 10)));

export type ThrottleReason = 'ConcurrentInvocationLimitExceeded' | 'ReservedFunctionConcurrentInvocationLimitExceeded';

/** Lambda's answer to an invocation over a concurrency limit: 429 TooManyRequestsException with a Reason. */
export const throttled = (reason: ThrottleReason): ThawError => new ThawError('TooManyRequests', 'Rate Exceeded.', { Reason: reason });

/** An admitted invocation; release it exactly once when the invocation is over (extra calls do nothing). */
export type Release = () => void;

interface ProvisionedSlot { readonly functionName: string; version: string | undefined; requested: number }

/**
 * Concurrency as Lambda counts it: invocations in flight, not environments. The account has a limit; a function
 * with reserved concurrency runs at most that many at once and is guaranteed them, taken out of the account's
 * unreserved pool; functions without a reservation share what is left. Provisioned concurrency of a function
 * without a reservation is also set aside from the unreserved pool, and invocations of that version use those
 * slots first.
 */
export class Concurrency {
  private readonly reserved: Map<string, number>;
  /** Provisioned concurrency configurations by function and qualifier, with the version they resolve to. */
  private readonly provisioned = new Map<string, ProvisionedSlot>();
  private readonly inflight = new Map<string, number>();
  private readonly provisionedInflight = new Map<string, number>();
  /** Invocations of functions without a reservation, beyond their provisioned slots. */
  private onDemand = 0;
  readonly minimumUnreserved: number;

  constructor(private readonly store: ConcurrencyStore, readonly accountLimit: number) {
    this.reserved = store.allReserved();
    this.minimumUnreserved = minimumUnreserved(accountLimit);
  }

  reservedOf(functionName: string): number | undefined {
    return this.reserved.get(functionName);
  }

  /** AccountLimit.UnreservedConcurrentExecutions: the limit minus every function's reservation. */
  unreservedLimit(): number {
    let sum = 0;
    for (const r of this.reserved.values()) sum += r;
    return this.accountLimit - sum;
  }

  /** Provisioned concurrency of functions without a reservation (set aside from the unreserved pool). */
  private provisionedUnreserved(except?: string): number {
    let sum = 0;
    for (const [k, p] of this.provisioned) if (k !== except && !this.reserved.has(p.functionName)) sum += p.requested;
    return sum;
  }

  private provisionedOf(functionName: string, except?: string): number {
    let sum = 0;
    for (const [k, p] of this.provisioned) if (k !== except && p.functionName === functionName) sum += p.requested;
    return sum;
  }

  /** PutFunctionConcurrency's checks, then the new reservation is stored and applies to the next invocation. */
  setReserved(functionName: string, reserved: number): void {
    const provisioned = this.provisionedOf(functionName);
    if (reserved < provisioned) {
      throw new ThawError('InvalidParameterValue', `Specified ReservedConcurrentExecutions for function is less than the function's provisioned concurrency [${provisioned}]. Reduce or delete its provisioned concurrency configurations first.`);
    }
    let others = 0;
    for (const [fn, r] of this.reserved) if (fn !== functionName) others += r;
    const unreservedAfter = this.accountLimit - others - reserved - this.provisionedUnreserved() + (this.reserved.has(functionName) ? 0 : provisioned);
    if (unreservedAfter < this.minimumUnreserved) {
      throw new ThawError('InvalidParameterValue', `Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [${this.minimumUnreserved}].`);
    }
    this.store.setReserved(functionName, reserved);
    this.reserved.set(functionName, reserved);
  }

  deleteReserved(functionName: string): void {
    this.store.deleteReserved(functionName);
    this.reserved.delete(functionName);
  }

  /** PutProvisionedConcurrencyConfig's checks against reserved and unreserved concurrency. */
  checkProvisioned(functionName: string, qualifier: string, requested: number): void {
    const key = `${functionName}\u0000${qualifier}`;
    const reserved = this.reserved.get(functionName);
    if (reserved !== undefined) {
      if (this.provisionedOf(functionName, key) + requested > reserved) {
        throw new ThawError('InvalidParameterValue', 'Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function');
      }
      return;
    }
    if (this.unreservedLimit() - this.provisionedUnreserved(key) - requested < this.minimumUnreserved) {
      throw new ThawError('InvalidParameterValue', `Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [${this.minimumUnreserved}].`);
    }
  }

  /** A provisioned concurrency configuration was stored (with the version it serves now) or removed (requested 0). */
  setProvisioned(functionName: string, qualifier: string, version: string | undefined, requested: number): void {
    const key = `${functionName}\u0000${qualifier}`;
    if (requested <= 0) this.provisioned.delete(key);
    else this.provisioned.set(key, { functionName, version, requested });
  }

  /** A function was deleted: its reservation and configurations went with it. */
  forget(functionName: string): void {
    this.reserved.delete(functionName);
    for (const [k, p] of this.provisioned) if (p.functionName === functionName) this.provisioned.delete(k);
  }

  /**
   * Admit one invocation of `version` of a function, or throw Lambda's TooManyRequestsException. Checked when the
   * invocation arrives; it counts until released.
   */
  acquire(functionName: string, version: string): Release {
    const reserved = this.reserved.get(functionName);
    const inflight = this.inflight.get(functionName) ?? 0;
    let undo: () => void;
    if (reserved !== undefined) {
      if (inflight >= reserved) throw throttled('ReservedFunctionConcurrentInvocationLimitExceeded');
      undo = () => undefined;
    } else {
      const vkey = `${functionName}\u0000${version}`;
      const used = this.provisionedInflight.get(vkey) ?? 0;
      let slots = 0;
      for (const p of this.provisioned.values()) if (p.functionName === functionName && p.version === version) slots += p.requested;
      if (used < slots) {
        this.provisionedInflight.set(vkey, used + 1);
        undo = () => {
          const n = (this.provisionedInflight.get(vkey) ?? 1) - 1;
          if (n <= 0) this.provisionedInflight.delete(vkey);
          else this.provisionedInflight.set(vkey, n);
        };
      } else {
        if (this.onDemand >= this.unreservedLimit() - this.provisionedUnreserved()) throw throttled('ConcurrentInvocationLimitExceeded');
        this.onDemand++;
        undo = () => { this.onDemand--; };
      }
    }
    this.inflight.set(functionName, inflight + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      undo();
      const n = (this.inflight.get(functionName) ?? 1) - 1;
      if (n <= 0) this.inflight.delete(functionName);
      else this.inflight.set(functionName, n);
    };
  }

  /** Invocations in flight: all of them, and one function's. */
  usage(functionName?: string): number {
    if (functionName !== undefined) return this.inflight.get(functionName) ?? 0;
    let sum = 0;
    for (const n of this.inflight.values()) sum += n;
    return sum;
  }
}
