import type { Logger } from '../util/log.js';
import type { VersionRecord } from './model.js';
import type { CodeStore } from './code-store.js';

/** What the sweep asks of the rest of the server. */
export interface CodeSweepSources {
  readonly code: CodeStore;
  /** Packages some function version or layer version still names. */
  readonly referencedCode: () => ReadonlySet<string>;
  /** Versions some live environment runs (its code and layers are mounted: they stay until it stops). */
  readonly versionsInUse: () => readonly VersionRecord[];
  /** The layer packages of a version (in order; throws for layers this server does not have). */
  readonly layerShas: (arns: readonly string[]) => string[];
  /** Every distinct layer list some function version uses. */
  readonly layerLists: () => readonly (readonly string[])[];
  /** Remove merged /opt directories whose key is not kept. */
  readonly collectOpt: (keep: ReadonlySet<string>) => Promise<number>;
  readonly optKey: (layerShas: readonly string[]) => string;
  readonly logger: Logger;
}

/**
 * Releases what nothing uses any more: a package's decrypted tree in the runtime directory (tmpfs), its store
 * artifacts and its row, and merged /opt directories, once no function version, layer version or live environment
 * needs them, and decrypted trees no environment has mounted nor anyone asked for in 15 minutes (materialised
 * again on the next cold start). Runs shortly after every registry change, again while a released package is still mounted by an
 * environment that has not stopped yet, and every few minutes (layer deletions, anything missed).
 */
export class CodeSweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private readonly periodic: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly s: CodeSweepSources, private readonly o: { delayMs?: number; retryMs?: number; everyMs?: number; idleMs?: number } = {}) {
    this.periodic = setInterval(() => this.schedule(), o.everyMs ?? 5 * 60 * 1000);
    this.periodic.unref();
  }

  /** Sweep soon (changes in a burst share one sweep). */
  schedule(delayMs = this.o.delayMs ?? 100): void {
    if (this.closed || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.sweep().catch((err: unknown) => this.s.logger.warn({ err }, 'code sweep failed'));
    }, delayMs);
    this.timer.unref();
  }

  /** One sweep (a sweep asked for while one runs follows it). */
  async sweep(): Promise<void> {
    if (this.running !== undefined) {
      this.again = true;
      return this.running;
    }
    this.running = this.run().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.schedule();
      }
    });
    return this.running;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.periodic);
    if (this.timer !== undefined) clearTimeout(this.timer);
  }

  private async run(): Promise<void> {
    const referenced = new Set(this.s.referencedCode());
    const mounted = new Set<string>();
    const keepOpt = new Set<string>();
    const lists: (readonly string[])[] = [...this.s.layerLists()];
    for (const v of this.s.versionsInUse()) {
      mounted.add(v.codeSha256);
      lists.push(v.config.layers);
    }
    for (const arns of lists) {
      if (arns.length === 0) continue;
      try {
        const shas = this.s.layerShas(arns);
        for (const sha of shas) mounted.add(sha);
        keepOpt.add(this.s.optKey(shas));
      } catch {
        // Layers this server does not have: nothing of theirs is materialised.
      }
    }
    const removed = await this.s.code.collect(new Set([...referenced, ...mounted]));
    const opt = await this.s.collectOpt(keepOpt);
    const idle = await this.s.code.evictIdle(mounted, this.o.idleMs ?? 15 * 60 * 1000);
    if (removed > 0 || opt > 0 || idle > 0) this.s.logger.info({ packages: removed, optDirs: opt, idleTrees: idle }, 'released code no function, layer or environment uses');
    // A package no version names but an environment still runs goes once that environment has stopped.
    if ([...mounted].some((sha) => !referenced.has(sha))) this.schedule(this.o.retryMs ?? 2000);
  }
}
