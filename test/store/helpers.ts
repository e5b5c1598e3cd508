import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { openDb, type Db } from '../../src/control/db.js';
import { openStore } from '../../src/store/open.js';
import type { Store } from '../../src/store/store.js';

export interface TestStore {
  readonly dataDir: string;
  readonly db: Db;
  readonly store: Store;
}

export const SECRET_ENV = { THAW_STORE_SECRET: 'a'.repeat(64) };

export function tempDir(prefix = 'thaw-store-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A store over a fresh (or given) data directory, with a fixed secret. */
export function makeStore(dataDir = tempDir(), env: NodeJS.ProcessEnv = SECRET_ENV): TestStore {
  const db = openDb(join(dataDir, 'thaw.db'));
  return { dataDir, db, store: openStore({ dataDir, db, env }) };
}

export function writeTree(root: string, files: Record<string, string | Buffer>): string {
  for (const [rel, content] of Object.entries(files)) {
    const p = join(root, rel);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, content);
  }
  return root;
}

/** A node_modules tree of `count` packages, deterministic for a seed, about `bytesEach` per package. */
export function dependencies(seed: string, count: number, bytesEach: number): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (let i = 0; i < count; i++) {
    const name = i % 3 === 0 ? `@scope/pkg${i}` : `pkg${i}`;
    out[`node_modules/${name}/package.json`] = Buffer.from(JSON.stringify({ name, version: '1.0.0', main: 'index.js' }));
    out[`node_modules/${name}/index.js`] = pseudo(`${seed}/${i}/index`, Math.floor(bytesEach * 0.3));
    out[`node_modules/${name}/lib/util.js`] = pseudo(`${seed}/${i}/util`, Math.floor(bytesEach * 0.7));
  }
  return out;
}

/** Incompressible, deterministic bytes. */
export function pseudo(seed: string, n: number): Buffer {
  const out = Buffer.alloc(n);
  let block = Buffer.from(seed);
  for (let at = 0; at < n; at += 32) {
    block = Buffer.from(require256(block));
    block.copy(out, at, 0, Math.min(32, n - at));
  }
  return out;
}

const require256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

export const randomName = (): string => randomBytes(4).toString('hex');
