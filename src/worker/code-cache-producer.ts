import type { Logger } from '../util/log.js';
import type { VersionRecord } from '../control/model.js';
import type { Environment } from './environment.js';
import type { RuntimeDef } from './runtimes.js';
import type { CodeCacheProduction } from './code-cache.js';
import { verifyCodeCache } from './code-cache-verify.js';

/** Where the producing environment's one upload goes (EnvironmentOptions.produceCodeCache). */
export interface CodeCacheSink {
  readonly maxBytes: number;
  readonly received: boolean;
  receive(data: Buffer): void;
}

export interface ProduceOptions {
  readonly version: VersionRecord;
  readonly runtime: RuntimeDef;
  readonly codeDir: string;
  readonly optDir?: string;
  readonly production: CodeCacheProduction;
}

export interface CodeCacheProducerOptions {
  /** A new, plain environment of the version that uploads its cache to `sink` after Init (never pooled). */
  readonly make: (o: ProduceOptions, sink: CodeCacheSink) => Environment;
  /** True when the worker has room for one more environment of this many bytes (a producer never evicts). */
  readonly hasRoom: (memoryBytes: number) => boolean;
  readonly logger: Logger;
  /** Producers running at once (default 1). */
  readonly concurrency?: number;
}

/**
 * The trusted step that makes code caches, as a snapshot build is made: a fresh sandbox of the version runs
 * its Init and nothing else (no invocation, no input), its runtime serialises the code cache and uploads it
 * once, and the sandbox is stopped. Environments that serve invocations only read caches, so nothing an
 * invocation does can change what a later cold start runs. The upload is then checked against the version's
 * own files (verifyCodeCache) before it is kept, under a key of that version alone.
 */
export class CodeCacheProducer {
  private readonly running = new Set<Environment>();
  private closed = false;

  constructor(private readonly o: CodeCacheProducerOptions) {}

  get size(): number {
    return this.running.size;
  }

  /** Produce the cache of a version, off the request path. Resolves when done, whether or not one was kept. */
  async produce(p: ProduceOptions): Promise<void> {
    const log = this.o.logger.child({ fn: p.version.functionName, version: p.version.version, key: p.production.key });
    if (this.closed || this.running.size >= (this.o.concurrency ?? 1) || !this.o.hasRoom(p.version.config.memoryMb * 1024 * 1024)) {
      p.production.release(false);
      return;
    }
    let upload: Buffer | undefined;
    const sink: CodeCacheSink = {
      maxBytes: p.production.maxBytes,
      get received() {
        return upload !== undefined;
      },
      receive: (data) => {
        upload ??= data;
      },
    };
    const env = this.o.make(p, sink);
    this.running.add(env);
    try {
      // Resolves when the runtime asks for its first invocation, which it does only after its upload.
      await env.start();
    } catch (err) {
      log.debug({ err: err instanceof Error ? err.message : String(err) }, 'code cache producer failed');
    } finally {
      this.running.delete(env);
      await env.stop();
    }
    if (upload === undefined || this.closed) {
      p.production.release();
      return;
    }
    try {
      const roots = new Map([['/var/task/', p.codeDir], ...(p.optDir === undefined ? [] : [['/opt/', p.optDir] as [string, string]])]);
      const v = await verifyCodeCache(upload, roots);
      if (v.dropped > 0) log.warn({ kept: v.kept, dropped: v.dropped }, 'code cache entries that do not match the version\'s files were dropped');
      if (!p.production.put(v.data)) p.production.release();
    } catch (err) {
      log.warn({ err: err instanceof Error ? err.message : String(err) }, 'malformed code cache refused');
      p.production.release();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.running].map((e) => e.stop()));
  }
}
