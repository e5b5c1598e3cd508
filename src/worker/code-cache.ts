import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../util/log.js';

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
 * cache never outlives what it was made from). Written to a temporary file and renamed into place.
 */
export class CodeCacheStore {
  private readonly dir: string;
  private readonly memory = new Map<string, Buffer | null>();
  private readonly claims = new Map<string, number>();

  constructor(dataDir: string, private readonly logger: Logger, private readonly maxBytes = 256 * 1024 * 1024) {
    this.dir = join(dataDir, 'cache', 'code');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  static key(codeSha256: string, runtimeId: string, binaryVersion: string): string {
    return `${codeSha256}-${runtimeId}-${binaryVersion}`.replace(/[^a-zA-Z0-9.-]/g, '_');
  }

  handle(key: string): CodeCacheHandle {
    return {
      get: () => this.get(key),
      claim: () => {
        if (this.get(key) !== undefined) return false;
        const t = this.claims.get(key);
        // A claim expires so that a producer that died does not block the cache forever.
        if (t !== undefined && Date.now() - t < 60_000) return false;
        this.claims.set(key, Date.now());
        return true;
      },
      put: (data) => this.put(key, data),
    };
  }

  private get(key: string): Buffer | undefined {
    const m = this.memory.get(key);
    if (m !== undefined) return m ?? undefined;
    let data: Buffer | null = null;
    try {
      data = readFileSync(join(this.dir, `${key}.bin`));
    } catch {
      data = null;
    }
    this.memory.set(key, data);
    return data ?? undefined;
  }

  private put(key: string, data: Buffer): void {
    this.claims.delete(key);
    if (data.length === 0 || data.length > this.maxBytes) return;
    const file = join(this.dir, `${key}.bin`);
    const tmp = `${file}.${randomBytes(6).toString('hex')}`;
    try {
      writeFileSync(tmp, data, { mode: 0o600 });
      renameSync(tmp, file);
      this.memory.set(key, data);
      this.logger.debug({ key, bytes: data.length }, 'code cache stored');
    } catch (err) {
      this.logger.warn({ err, key }, 'cannot store code cache');
    }
  }
}
