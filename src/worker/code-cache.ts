import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../util/log.js';
import type { ReadOptions, Store } from '../store/store.js';

/** What an environment needs from the code cache of its version. */
export interface CodeCacheHandle {
  /** The cache to start with, if one was produced. */
  get(): Buffer | undefined;
  /** True for exactly one environment at a time while no cache exists: that one produces it. */
  claim(): boolean;
  put(data: Buffer): void;
}

/**
 * Post-init V8 code caches, one per code package and runtime binary (the key changes when either does, so a
 * cache never outlives what it was made from), kept in the chunk store as `code-cache/<key>` and in memory
 * once loaded. load() must have resolved before an environment asks for a key's cache.
 */
export class CodeCacheStore {
  private readonly memory = new Map<string, Buffer | null>();
  private readonly loading = new Map<string, Promise<void>>();
  private readonly claims = new Map<string, number>();

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly maxBytes = 256 * 1024 * 1024,
    private readonly readOptions: (key: string) => ReadOptions = () => ({}),
  ) {}

  static key(codeSha256: string, runtimeId: string, binaryVersion: string): string {
    return `${codeSha256}-${runtimeId}-${binaryVersion}`.replace(/[^a-zA-Z0-9.-]/g, '_');
  }

  /** Bring a key's cache (if there is one) into memory. A cache that cannot be read is treated as absent. */
  load(key: string): Promise<void> {
    if (this.memory.has(key)) return Promise.resolve();
    let p = this.loading.get(key);
    if (p === undefined) {
      p = (async () => {
        let data: Buffer | null = null;
        if (this.store.has(`code-cache/${key}`)) {
          try {
            data = await this.store.readBlob(`code-cache/${key}`, this.readOptions(key));
          } catch (err) {
            this.logger.warn({ err, key }, 'code cache unreadable; starting without it');
          }
        }
        if (!this.memory.has(key)) this.memory.set(key, data);
      })().finally(() => this.loading.delete(key));
      this.loading.set(key, p);
    }
    return p;
  }

  async handle(key: string): Promise<CodeCacheHandle> {
    await this.load(key);
    return {
      get: () => this.memory.get(key) ?? undefined,
      claim: () => {
        if (this.memory.get(key) != null) return false;
        const t = this.claims.get(key);
        // A claim expires so that a producer that died does not block the cache forever.
        if (t !== undefined && Date.now() - t < 60_000) return false;
        this.claims.set(key, Date.now());
        return true;
      },
      put: (data) => this.put(key, data),
    };
  }

  private put(key: string, data: Buffer): void {
    this.claims.delete(key);
    if (data.length === 0 || data.length > this.maxBytes) return;
    this.memory.set(key, data);
    this.store.putBlob(`code-cache/${key}`, 'code-cache', data).then(
      () => this.logger.debug({ key, bytes: data.length }, 'code cache stored'),
      (err: unknown) => this.logger.warn({ err, key }, 'cannot store code cache'),
    );
  }

  /** Caches of package versions no longer referenced are removed (their chunks go at the next collect). */
  collect(referencedCode: ReadonlySet<string>): number {
    let removed = 0;
    for (const name of this.store.names('code-cache')) {
      const sha = name.slice('code-cache/'.length, 'code-cache/'.length + 64);
      if (!referencedCode.has(sha) && this.store.remove(name)) removed++;
    }
    return removed;
  }

  /** Caches from before the chunk store (DATA/cache/code/<key>.bin) move into it. */
  async importLegacy(dataDir: string): Promise<number> {
    const dir = join(dataDir, 'cache', 'code');
    if (!existsSync(dir)) return 0;
    let n = 0;
    for (const f of readdirSync(dir)) {
      if (!f.endsWith('.bin')) continue;
      await this.store.putBlob(`code-cache/${f.slice(0, -4)}`, 'code-cache', readFileSync(join(dir, f)));
      n++;
    }
    rmSync(dir, { recursive: true, force: true });
    return n;
  }
}
