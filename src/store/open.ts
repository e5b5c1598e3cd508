import { createHash } from 'node:crypto';
import { accessSync, constants, mkdirSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Db } from '../control/db.js';
import type { Logger } from '../util/log.js';
import { silentLogger } from '../util/log.js';
import { ChunkStore } from './chunk-store.js';
import { DirTier } from './dir-tier.js';
import { MemoryTier } from './memory-tier.js';
import { S3Tier } from './s3-tier.js';
import { Sealer, loadSecret } from './seal.js';
import { Store } from './store.js';
import type { ChunkTier } from './tier.js';

/** Where chunks come from when nothing closer has them. */
export type OriginOptions =
  | { readonly kind: 'dir'; readonly path: string }
  | { readonly kind: 's3'; readonly bucket: string; readonly prefix?: string; readonly endpoint?: string; readonly region?: string };

export interface StoreOptions {
  readonly dataDir: string;
  readonly db: Db;
  readonly logger?: Logger;
  /** Default: the directory DATA/store. */
  readonly origin?: OriginOptions;
  readonly memoryBytes?: number;
  /** Local disk cache in front of a remote origin (DATA/cache/chunks); none in front of a local directory. */
  readonly diskCacheBytes?: number;
  readonly env?: NodeJS.ProcessEnv;
}

/** `s3://bucket/prefix` or a directory. */
export function parseOrigin(spec: string, endpoint?: string): OriginOptions {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(spec);
  if (m === null) return { kind: 'dir', path: spec };
  const prefix = m[2] ?? '';
  return { kind: 's3', bucket: m[1] as string, ...(prefix === '' ? {} : { prefix: prefix.endsWith('/') ? prefix : `${prefix}/` }), ...(endpoint === undefined ? {} : { endpoint }) };
}

/** The data directory's chunk store: memory → (disk cache) → origin, sealed with the deployment secret. */
export function openStore(o: StoreOptions): Store {
  const secret = loadSecret(join(o.dataDir, 'store.key'), o.env);
  const origin = o.origin ?? { kind: 'dir', path: join(o.dataDir, 'store') };
  const tiers: ChunkTier[] = [new MemoryTier(o.memoryBytes ?? 128 * 1024 * 1024)];
  if (origin.kind === 's3') {
    tiers.push(new DirTier(join(o.dataDir, 'cache', 'chunks'), { name: 'disk', maxBytes: o.diskCacheBytes ?? 2 * 1024 * 1024 * 1024 }));
    tiers.push(new S3Tier(origin));
  } else {
    tiers.push(new DirTier(origin.path, { name: 'origin', durable: true }));
  }
  return new Store(new ChunkStore(new Sealer(secret), tiers, o.logger ?? silentLogger), o.db);
}

/**
 * Where decrypted artifacts are materialised for execution: never under the data directory, and in memory
 * when possible (a tmpfs: nothing decrypted reaches a disk, and a code tree of thousands of files is written
 * in a fraction of the time). $THAW_RUNTIME_DIR, else /run/thaw or /dev/shm when it is a writable tmpfs, else
 * the temporary directory; below it a directory derived from the data directory, so two servers never share
 * one. Emptied when the server starts and when it stops.
 */
export function runtimeDirFor(dataDir: string, env: NodeJS.ProcessEnv = process.env): string {
  const id = `thaw-${createHash('sha256').update(dataDir).digest('hex').slice(0, 16)}`;
  const given = env.THAW_RUNTIME_DIR;
  if (given !== undefined && given !== '') return join(given, id);
  for (const base of ['/run/thaw', '/dev/shm']) {
    try {
      if (base === '/run/thaw') mkdirSync(base, { recursive: true, mode: 0o755 });
      accessSync(base, constants.W_OK);
      if (statfsSync(base).type === TMPFS_MAGIC) return join(base, id);
    } catch {
      // not usable: try the next
    }
  }
  return join(tmpdir(), id);
}

const TMPFS_MAGIC = 0x01021994;

export function resetRuntimeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o711 });
}
