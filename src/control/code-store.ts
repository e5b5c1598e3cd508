import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Db } from './db.js';
import { extractZip } from './zip.js';
import { zipDirectory } from './package.js';
import type { ReadOptions, Store } from '../store/store.js';
import { isStoreError } from '../store/errors.js';
import type { Logger } from '../util/log.js';
import { silentLogger } from '../util/log.js';
import { ThawError } from '../util/errors.js';

const REBUILD_MAX_ENTRIES = 20_000;

export const DEFAULT_CODE_STORAGE = 80_530_636_800;

export interface StoredCode {
  /** Hex SHA-256 of the zip. */
  readonly sha256: string;
  readonly size: number;
}

/**
 * Deployment packages by content, in the chunk store: the extracted tree (`code/<sha>`, packed so that equal
 * dependencies dedup across packages) and, unless the zip can be rebuilt byte for byte from the tree (as
 * `thaw deploy`'s deterministic packaging can), the zip as uploaded (`code-zip/<sha>`) for GetFunction's
 * Code.Location. Trees are materialised for execution under the runtime directory, outside the data
 * directory, once per package however many versions share it.
 */
export class CodeStore {
  private readonly root: string;
  private readonly pending = new Map<string, Promise<StoredCode>>();
  /** Packages put and not yet released by the caller (not yet named by the registry): never collected. */
  private readonly holds = new Map<string, number>();
  private readonly materialising = new Map<string, Promise<string>>();
  /** When each package's tree was last asked for, and which trees are complete. */
  private readonly used = new Map<string, number>();
  private readonly ready = new Set<string>();

  constructor(
    private readonly db: Db,
    private readonly dataDir: string,
    private readonly store: Store,
    runtimeDir: string,
    private readonly logger: Logger = silentLogger,
    /** How reads of a package's chunks are done (access traces); none by default. */
    private readonly readOptions: (sha256: string) => ReadOptions = () => ({}),
    /** The account's code storage (Lambda's TotalCodeSize, 75 GB), counted in bytes as stored. */
    readonly maxStoredBytes = DEFAULT_CODE_STORAGE,
  ) {
    this.root = join(runtimeDir, 'code');
    mkdirSync(this.root, { recursive: true, mode: 0o711 });
  }

  /** Where the extracted tree is for environments (read-only); valid once materialise() has resolved. */
  dir(sha256: string): string {
    return join(this.root, sha256);
  }

  /** Decrypt the package's tree from the store into dir(sha256), once per process. */
  materialise(sha256: string): Promise<string> {
    this.used.set(sha256, Date.now());
    let p = this.materialising.get(sha256);
    if (p === undefined) {
      p = this.store.materialiseTree(`code/${sha256}`, this.dir(sha256), this.readOptions(sha256)).then(
        () => {
          this.ready.add(sha256);
          return this.dir(sha256);
        },
        (e: unknown) => {
          if (!isStoreError(e)) throw e;
          this.logger.error({ err: e, sha256 }, 'code package unreadable from the chunk store');
          const why = e.code === 'ChunkCorrupt' ? 'failed verification' : e.code === 'ChunkMissing' ? 'is incomplete' : 'is unreadable';
          throw new ThawError('Service', `The function's code package ${why} in the chunk store (${e.code}); it was not run.`, { Reason: e.code }, { cause: e });
        },
      );
      p.catch(() => this.materialising.delete(sha256));
      this.materialising.set(sha256, p);
    }
    return p;
  }

  /**
   * Remove decrypted trees that no live environment has mounted (`mounted`) and nobody asked for in `idleMs`: a
   * package that inflates to 250 MB does not keep 250 MB of tmpfs while its function sits unused. The next cold
   * start materialises it again from the store. Returns how many trees went.
   */
  async evictIdle(mounted: ReadonlySet<string>, idleMs: number, now = Date.now()): Promise<number> {
    let evicted = 0;
    for (const sha of readdirSync(this.root).filter((f) => /^[0-9a-f]{64}$/.test(f))) {
      if (mounted.has(sha) || this.pending.has(sha) || this.holds.has(sha) || now - (this.used.get(sha) ?? 0) < idleMs) continue;
      // Still being materialised: not idle.
      if (this.materialising.has(sha) && !this.ready.has(sha)) continue;
      this.ready.delete(sha);
      this.materialising.delete(sha);
      this.used.delete(sha);
      const gone = join(this.root, `.gone-${randomBytes(6).toString('hex')}`);
      try {
        renameSync(this.dir(sha), gone);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw e;
      }
      await rm(gone, { recursive: true, force: true });
      evicted++;
    }
    return evicted;
  }

  /**
   * Store a package. It is held (safe from collect()) until release(sha256) is called, which the caller does once
   * the registry names it, or once it gave up.
   */
  async put(zip: Buffer): Promise<StoredCode> {
    const sha256 = createHash('sha256').update(zip).digest('hex');
    this.holds.set(sha256, (this.holds.get(sha256) ?? 0) + 1);
    try {
      return await this.putUnheld(sha256, zip);
    } catch (e) {
      this.release(sha256);
      throw e;
    }
  }

  release(sha256: string): void {
    const n = (this.holds.get(sha256) ?? 0) - 1;
    if (n <= 0) this.holds.delete(sha256);
    else this.holds.set(sha256, n);
  }

  private async putUnheld(sha256: string, zip: Buffer): Promise<StoredCode> {
    const known = this.db.prepare('SELECT size FROM code WHERE sha256 = ?').get(sha256) as { size: number } | undefined;
    if (known !== undefined && this.store.has(`code/${sha256}`)) return { sha256, size: known.size };
    let p = this.pending.get(sha256);
    if (p === undefined) {
      p = this.write(sha256, zip).finally(() => this.pending.delete(sha256));
      this.pending.set(sha256, p);
    }
    return p;
  }

  private async write(sha256: string, zip: Buffer): Promise<StoredCode> {
    const tmp = join(this.root, `.put-${randomBytes(6).toString('hex')}`);
    try {
      const x = await extractZip(zip, tmp);
      // The zip is kept only when the tree does not give it back (uploads zipped by other tools). Rebuilding is
      // tried only for zips laid out as zipDirectory writes them, and not for very many entries (it costs about
      // as much as packaging them again).
      const rebuilt = x.packagedByThaw && x.entries <= REBUILD_MAX_ENTRIES ? await zipDirectory(tmp).catch(() => undefined) : undefined;
      const rebuildable = rebuilt !== undefined && createHash('sha256').update(rebuilt).digest('hex') === sha256;
      if (!rebuildable) await this.store.putBlob(`code-zip/${sha256}`, 'code-zip', zip);
      await this.store.putTree(`code/${sha256}`, 'code', tmp, { zip: rebuildable ? 'rebuild' : 'stored' });
      const total = this.storedBytes();
      if (total > this.maxStoredBytes) {
        this.store.remove(`code/${sha256}`);
        this.store.remove(`code-zip/${sha256}`);
        throw new ThawError('CodeStorageExceeded', `Code storage limit exceeded: storing this package would take the account's code to ${total} bytes as stored (compressed), over its limit of ${this.maxStoredBytes} bytes.`, { limit: this.maxStoredBytes });
      }
      this.db.prepare('INSERT OR REPLACE INTO code (sha256, size, created_at) VALUES (?, ?, ?)').run(sha256, zip.length, Date.now());
      // The tree just extracted is the one environments need: keep it as the materialised copy.
      if (!this.materialising.has(sha256)) {
        await rm(this.dir(sha256), { recursive: true, force: true });
        await rename(tmp, this.dir(sha256));
        this.materialising.set(sha256, Promise.resolve(this.dir(sha256)));
        this.ready.add(sha256);
        this.used.set(sha256, Date.now());
      }
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    return { sha256, size: zip.length };
  }

  /**
   * Bytes every package (functions' and layers' code, and uploaded zips kept beside their trees) takes in the chunk
   * store: compressed and encrypted, each package counted whole. Not the zipped size: a small zip that inflates
   * to a large tree counts as what is stored.
   */
  storedBytes(): number {
    return this.store.storedBytesOf(['code', 'code-zip']);
  }

  /** The zip as uploaded (same bytes, same CodeSha256), from the store. */
  async zip(sha256: string): Promise<Buffer> {
    const m = this.store.manifest(`code/${sha256}`);
    if (m === undefined) throw new ThawError('ResourceNotFound', 'The code package no longer exists.');
    if (m.meta?.zip !== 'rebuild') return this.store.readBlob(`code-zip/${sha256}`);
    const zip = await zipDirectory(await this.materialise(sha256));
    if (createHash('sha256').update(zip).digest('hex') !== sha256) {
      throw new ThawError('Service', 'The code package could not be rebuilt to its original bytes.', { sha256 });
    }
    return zip;
  }

  /**
   * Remove packages nothing references any more: the row, the store artifacts (their chunks go at the store's next
   * collect) and the decrypted tree in the runtime directory, every byte of it. Packages held by a put are kept.
   */
  async collect(referenced: ReadonlySet<string>): Promise<number> {
    const rows = this.db.prepare('SELECT sha256 FROM code').pluck().all() as string[];
    const trees = readdirSync(this.root).filter((f) => /^[0-9a-f]{64}$/.test(f));
    let removed = 0;
    for (const sha of new Set([...rows, ...trees])) {
      if (referenced.has(sha) || this.pending.has(sha) || this.holds.has(sha)) continue;
      this.db.prepare('DELETE FROM code WHERE sha256 = ?').run(sha);
      this.store.remove(`code/${sha}`);
      this.store.remove(`code-zip/${sha}`);
      this.materialising.delete(sha);
      this.ready.delete(sha);
      this.used.delete(sha);
      // Renamed away first (at once), so that a put of the same package from now on finds the name free.
      const gone = join(this.root, `.gone-${randomBytes(6).toString('hex')}`);
      try {
        renameSync(this.dir(sha), gone);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      await rm(gone, { recursive: true, force: true });
      removed++;
    }
    // Leftovers of puts and removals cut short by a crash (this process never leaves them behind on its own).
    for (const f of readdirSync(this.root)) {
      if (f.startsWith('.gone-') || (f.startsWith('.put-') && this.pending.size === 0)) await rm(join(this.root, f), { recursive: true, force: true });
    }
    return removed;
  }

  /**
   * Data directories from before the chunk store kept each package as DATA/code/<sha>.zip plus its extracted
   * tree: move them into the store and remove the plaintext.
   */
  async importLegacy(): Promise<number> {
    const legacy = join(this.dataDir, 'code');
    if (!existsSync(legacy)) return 0;
    let imported = 0;
    for (const f of readdirSync(legacy)) {
      const m = /^([0-9a-f]{64})\.zip$/.exec(f);
      if (m === null) continue;
      const sha = m[1] as string;
      if (!this.store.has(`code/${sha}`)) {
        const zip = readFileSync(join(legacy, f));
        if (createHash('sha256').update(zip).digest('hex') !== sha) {
          this.logger.warn({ sha }, 'legacy code package does not match its name; not imported');
          continue;
        }
        this.pending.delete(sha);
        await this.write(sha, zip);
        imported++;
      }
    }
    rmSync(legacy, { recursive: true, force: true });
    if (imported > 0) this.logger.info({ imported }, 'code packages moved into the chunk store');
    return imported;
  }
}
