import { setImmediate as nextTurn } from 'node:timers/promises';

/**
 * Lets a long run of small synchronous steps (files written to a tmpfs, entries inflated in memory) give the event
 * loop a turn every `sliceMs`, so the server keeps answering while it works through a package of many files. Much
 * cheaper than making every step asynchronous: one thread-pool round trip per tiny file is what made such
 * packages take minutes.
 */
export class Pace {
  private since = performance.now();

  constructor(private readonly sliceMs = 10) {}

  async breathe(): Promise<void> {
    if (performance.now() - this.since < this.sliceMs) return;
    await nextTurn();
    this.since = performance.now();
  }
}
