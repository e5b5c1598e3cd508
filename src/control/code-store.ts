import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Db } from './db.js';
import { extractZip } from './zip.js';

export interface StoredCode {
  /** Hex SHA-256 of the zip. */
  readonly sha256: string;
  readonly size: number;
}

/**
 * Deployment packages by content: the zip as uploaded (served back by GetFunction's Code.Location) and its
 * extracted tree, which environments mount read-only. The zip is written and synced before the row that
 * names it is committed; a package is extracted once however many versions share it.
 */
export class CodeStore {
  private readonly root: string;
  private readonly pending = new Map<string, Promise<StoredCode>>();

  constructor(private readonly db: Db, dataDir: string) {
    this.root = join(dataDir, 'code');
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
  }

  zipPath(sha256: string): string {
    return join(this.root, `${sha256}.zip`);
  }

  /** The extracted tree, read-only inside environments. */
  dir(sha256: string): string {
    return join(this.root, sha256);
  }

  async put(zip: Buffer): Promise<StoredCode> {
    const sha256 = createHash('sha256').update(zip).digest('hex');
    const known = this.db.prepare('SELECT size FROM code WHERE sha256 = ?').get(sha256) as { size: number } | undefined;
    if (known !== undefined && existsSync(this.dir(sha256))) return { sha256, size: known.size };
    let p = this.pending.get(sha256);
    if (p === undefined) {
      p = this.write(sha256, zip).finally(() => this.pending.delete(sha256));
      this.pending.set(sha256, p);
    }
    return p;
  }

  private async write(sha256: string, zip: Buffer): Promise<StoredCode> {
    const dir = this.dir(sha256);
    rmSync(dir, { recursive: true, force: true });
    await extractZip(zip, dir);
    const tmp = `${this.zipPath(sha256)}.${randomBytes(6).toString('hex')}`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(zip);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.zipPath(sha256));
    this.db.prepare('INSERT OR REPLACE INTO code (sha256, size, created_at) VALUES (?, ?, ?)').run(sha256, zip.length, Date.now());
    return { sha256, size: zip.length };
  }

  /** Remove packages no version references any more. */
  async collect(referenced: ReadonlySet<string>): Promise<number> {
    const rows = this.db.prepare('SELECT sha256 FROM code').pluck().all() as string[];
    let removed = 0;
    for (const sha of rows) {
      if (referenced.has(sha) || this.pending.has(sha)) continue;
      this.db.prepare('DELETE FROM code WHERE sha256 = ?').run(sha);
      await rm(this.dir(sha), { recursive: true, force: true });
      await rm(this.zipPath(sha), { force: true });
      removed++;
    }
    return removed;
  }
}
