import { createHash } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../util/log.js';
import type { ReadOptions, Store } from '../store/store.js';

/** What a serving environment gets from the code cache of its version: the cache to start with, if any. */
export interface CodeCacheHandle {
  get(): Buffer | undefined;
}

/** The right to produce one version's cache, held by exactly one producer at a time. */
export interface CodeCacheProduction {
  readonly key: string;
  /** Largest cache accepted. */
  readonly maxBytes: number;
  /** Keep this cache (already checked by the caller; empty: there is nothing to cache); once. False when refused. */
  put(data: Buffer): boolean;
  /**
   * The producer failed: the key may be claimed again once the claim expires (a minute), or at once when
   * `backOff` is false (it never started).
   */
  release(backOff?: boolean): void;
}

/** What a code cache belongs to: one function version, its code and layers, and the runtime binary. */
export interface CodeCacheSubject {
  readonly functionName: string;
  readonly version: string;
  /** Changes on every update of the version (code or configuration), and for a function created anew. */
  readonly revisionId: string;
  /** The code package's SHA-256 plus the layers at /opt (see Pool's codeIdentity). */
  readonly codeIdentity: string;
  readonly codeSha256: string;
  readonly runtimeId: string;
  readonly binaryVersion: string;
}

/** Largest code cache kept (a realistic application's post-Init cache is a few MB). */
export const MAX_CODE_CACHE_BYTES = 64 * 1024 * 1024;

const EMPTY = Buffer.alloc(0);
const KEY = /^([0-9a-f]{64})-v2-[0-9a-f]{40}$/;

/**
 * Post-init V8 code caches, one per function version (function, version, revision, code and layers, runtime
 * binary), kept in the chunk store as `code-cache/<key>` and in memory once loaded. Caches are produced only by
 * a trusted step (CodeCacheProducer: a fresh sandbox that runs the version's Init and nothing else); a serving
 * environment only ever reads them. load() must have resolved before an environment asks for a key's cache.
 */
export class CodeCacheStore {
  private readonly memory = new Map<string, Buffer | null>();
  private readonly loading = new Map<string, Promise<void>>();
  private readonly claims = new Map<string, number>();

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly maxBytes = MAX_CODE_CACHE_BYTES,
    private readonly readOptions: (key: string) => ReadOptions = () => ({}),
  ) {}

  /**
   * The key starts with the code's SHA-256 (collect() and the access traces go by it); the rest is a digest of
   * everything else the cache belongs to, so that no two versions, functions or runtimes ever share one.
   */
  static key(s: CodeCacheSubject): string {
    const digest = createHash('sha256')
      .update(JSON.stringify([s.functionName, s.version, s.revisionId, s.codeIdentity, s.runtimeId, s.binaryVersion]))
      .digest('hex')
      .slice(0, 40);
    return `${s.codeSha256}-v2-${digest}`;
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
      get: () => {
        const data = this.memory.get(key);
        return data == null || data.length === 0 ? undefined : data;
      },
    };
  }

  /** The right to produce a key's cache: none while it has one or another producer holds the claim. */
  claim(key: string): CodeCacheProduction | undefined {
    if (this.memory.get(key) != null) return undefined;
    const t = this.claims.get(key);
    // A claim lasts a minute unless the cache is kept: a producer that failed is not retried on every cold start.
    if (t !== undefined && Date.now() - t < 60_000) return undefined;
    const claimed = Date.now();
    this.claims.set(key, claimed);
    let done = false;
    return {
      key,
      maxBytes: this.maxBytes,
      put: (data) => {
        if (done || data.length > this.maxBytes || this.memory.get(key) != null) return false;
        done = true;
        if (this.claims.get(key) === claimed) this.claims.delete(key);
        // Nothing to cache (no CommonJS compiled during Init): remembered until restart, so no producer runs again.
        if (data.length === 0) this.memory.set(key, EMPTY);
        else this.persist(key, data);
        return true;
      },
      release: (backOff = true) => {
        done = true;
        if (!backOff && this.claims.get(key) === claimed) this.claims.delete(key);
      },
    };
  }

  private persist(key: string, data: Buffer): void {
    this.memory.set(key, data);
    this.store.putBlob(`code-cache/${key}`, 'code-cache', data).then(
      () => this.logger.debug({ key, bytes: data.length }, 'code cache stored'),
      (err: unknown) => this.logger.warn({ err, key }, 'cannot store code cache'),
    );
  }

  /**
   * Caches of package versions no longer referenced are removed (their chunks go at the next collect), and so
   * is every cache keyed the old way (by code and runtime only: whichever environment uploaded it first).
   */
  collect(referencedCode: ReadonlySet<string>): number {
    let removed = 0;
    for (const name of this.store.names('code-cache')) {
      const sha = KEY.exec(name.slice('code-cache/'.length))?.[1];
      if ((sha === undefined || !referencedCode.has(sha)) && this.store.remove(name)) removed++;
    }
    return removed;
  }

  /** Caches from before the chunk store (DATA/cache/code/<key>.bin) came from any environment: dropped. */
  dropLegacy(dataDir: string): boolean {
    const dir = join(dataDir, 'cache', 'code');
    if (!existsSync(dir)) return false;
    rmSync(dir, { recursive: true, force: true });
    return true;
  }
}
