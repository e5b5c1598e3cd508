/** How fast one function may write log output (bytes), shared by all its environments. */
export interface LogRate {
  /** Sustained rate (default 2 MiB/s). */
  readonly bytesPerSecond?: number;
  /** Allowed at once before the rate applies (default 8 MiB). */
  readonly burstBytes?: number;
}

/**
 * A token bucket over a function's log output. Once it runs dry the function's output is dropped until half the
 * burst has refilled, so that a function writing just over its rate loses stretches of output (each announced by
 * one marker line) rather than every other line.
 */
export class LogBudget {
  private readonly rate: number;
  private readonly burst: number;
  private tokens: number;
  private last: number;
  private dry = false;

  constructor(r: LogRate = {}, private readonly now: () => number = () => performance.now()) {
    this.rate = r.bytesPerSecond ?? 2 * 1024 * 1024;
    this.burst = r.burstBytes ?? 8 * 1024 * 1024;
    this.tokens = this.burst;
    this.last = now();
  }

  /** True when `bytes` more may be kept; false when they are to be dropped. */
  take(bytes: number): boolean {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.rate);
    this.last = t;
    if (this.dry) {
      if (this.tokens < this.burst / 2) return false;
      this.dry = false;
    }
    // A piece larger than the whole burst is let through on a full bucket (and goes into debt).
    if (this.tokens >= Math.min(bytes, this.burst)) {
      this.tokens -= bytes;
      return true;
    }
    this.dry = true;
    return false;
  }
}
