import type { Sandbox } from '../sandbox/driver.js';

/**
 * Freezes an environment's processes while it waits for its next event, as Lambda does: a loop or timer a
 * function left running after its invocation gets no CPU until the next invocation is handed over.
 *
 * The freeze comes `delayMs` after the runtime asked for the next event, so a runtime's own work right after
 * an answer (the Node runtime's post-init code cache is sent beside the next-event request) is not cut in
 * half, and back-to-back invocations pay neither write. Thawing is one synchronous write, before the event is
 * handed to the runtime and before any shutdown signal.
 */
export class IdleFreezer {
  private timer: NodeJS.Timeout | undefined;
  private frozen: Sandbox | undefined;

  constructor(private readonly delayMs: number) {}

  /** The environment is idle: freeze it soon. */
  idle(sandbox: Sandbox | undefined): void {
    if (sandbox?.freeze === undefined || this.delayMs < 0) return;
    this.cancel();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (sandbox.freeze?.() === true) this.frozen = sandbox;
    }, this.delayMs);
    this.timer.unref();
  }

  /** Work is coming (an invocation, a shutdown): thaw now, or never freeze. */
  wake(): void {
    this.cancel();
    const sb = this.frozen;
    this.frozen = undefined;
    sb?.thaw?.();
  }

  private cancel(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
