import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { SnapshotVerifyError } from './errors.js';

/**
 * The manifest committed next to a snapshot blob. A blob is only ever handed to V8 after verifySnapshot: the
 * manifest exists (it is written last, after the blob is synced), the blob's size and SHA-256 match it, and
 * (when asked) the runtime binary and flags are the ones it was built with. V8 does not checksum a startup
 * snapshot: a damaged blob crashes it or, worse, deserialises into a subtly wrong heap.
 */

export const MANIFEST_FILE = 'manifest.json';
export const BLOB_FILE = 'snapshot.blob';

const binaryIdentity = z.strictObject({
  path: z.string(),
  version: z.string(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  sizeBytes: z.number().int().nonnegative(),
  mtimeMs: z.number(),
});
export type BinaryIdentity = z.infer<typeof binaryIdentity>;

const manifestSchema = z.strictObject({
  format: z.literal(1),
  blob: z.strictObject({ file: z.literal(BLOB_FILE), sha256: z.string().regex(/^[0-9a-f]{64}$/), sizeBytes: z.number().int().positive() }),
  node: binaryIdentity,
  /** Node/V8 options the snapshot was built with; a restore must pass exactly these. */
  flags: z.array(z.string()),
  /** NODE_OPTIONS in the build environment ('' when unset); a restore must run with the same. */
  nodeOptions: z.string(),
  runtimeId: z.string(),
  handler: z.string(),
  /** Where the function's code was (and must be again at restore) inside the sandbox. */
  taskRoot: z.string(),
  bundle: z.strictObject({ sha256: z.string(), sizeBytes: z.number().int().nonnegative(), minified: z.boolean(), inputs: z.number().int().nonnegative() }),
  /** Whether V8's code cache is in the blob. */
  codeCache: z.boolean(),
  createdAt: z.string(),
  buildMs: z.number(),
  initMs: z.number(),
  hooks: z.strictObject({ before: z.number().int().nonnegative(), after: z.number().int().nonnegative() }),
  deferred: z.array(z.string()),
});
export type SnapshotManifest = z.infer<typeof manifestSchema>;

const identities = new Map<string, Promise<BinaryIdentity>>();

/** SHA-256 of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Identity of a runtime binary: path, version, SHA-256, size and mtime. Hashing ~100 MB costs a few hundred
 * milliseconds, so results are cached per (path, inode, size, mtime) for the life of the process.
 */
export async function binaryIdentityOf(path: string, version: string): Promise<BinaryIdentity> {
  const st = await stat(path);
  const key = `${path}\0${st.ino}\0${st.size}\0${st.mtimeMs}\0${version}`;
  let p = identities.get(key);
  if (p === undefined) {
    p = sha256File(path).then((sha256) => ({ path, version, sha256, sizeBytes: st.size, mtimeMs: st.mtimeMs }));
    p.catch(() => identities.delete(key));
    identities.set(key, p);
  }
  return p;
}

/** Write the manifest atomically (temporary file, fsync, rename, fsync of the directory): the commit point. */
export async function commitManifest(dir: string, manifest: SnapshotManifest): Promise<void> {
  const tmp = join(dir, `.${MANIFEST_FILE}.tmp`);
  // A new file, never through an existing name or link (the directory is Thaw's own; this is the second line).
  await rm(tmp, { force: true });
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
  try {
    await fh.writeFile(`${JSON.stringify(manifest, null, 2)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, join(dir, MANIFEST_FILE));
  await fsyncDir(dir);
}

/** Remove the manifest first, so that a snapshot being replaced is never half-committed. */
export async function uncommit(dir: string): Promise<void> {
  await rm(join(dir, MANIFEST_FILE), { force: true });
  await fsyncDir(dir).catch(() => undefined);
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function readManifest(dir: string): Promise<SnapshotManifest> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new SnapshotVerifyError('ManifestMissing');
    throw err;
  }
  return parseManifest(text);
}

/** A manifest's text, checked against the schema; throws SnapshotVerifyError('ManifestInvalid'). */
export function parseManifest(text: string): SnapshotManifest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new SnapshotVerifyError('ManifestInvalid', 'not JSON');
  }
  const r = manifestSchema.safeParse(parsed);
  if (!r.success) throw new SnapshotVerifyError('ManifestInvalid', r.error.issues[0]?.message);
  return r.data;
}

export interface VerifyOptions {
  /** Host path of the runtime binary that will restore it: must be byte-identical to the one that built it. */
  readonly nodeBinary?: string;
  /** The Node/V8 options the restore will use: must equal the manifest's. */
  readonly flags?: readonly string[];
}

export interface VerifiedSnapshot {
  readonly manifest: SnapshotManifest;
  readonly blobPath: string;
}

/**
 * Check a committed snapshot before it is used: recompute the blob's size and SHA-256 and compare them with the
 * manifest; optionally check the runtime binary and flags. Throws SnapshotVerifyError.
 */
export async function verifySnapshot(dir: string, opts: VerifyOptions = {}): Promise<VerifiedSnapshot> {
  const manifest = await readManifest(dir);
  const blobPath = join(dir, manifest.blob.file);
  let size: number;
  try {
    size = (await stat(blobPath)).size;
  } catch {
    throw new SnapshotVerifyError('BlobMissing', manifest.blob.file);
  }
  if (size !== manifest.blob.sizeBytes) throw new SnapshotVerifyError('SizeMismatch', `${size} bytes, manifest says ${manifest.blob.sizeBytes}`);
  const sha256 = await sha256File(blobPath);
  if (sha256 !== manifest.blob.sha256) throw new SnapshotVerifyError('ChecksumMismatch');
  if (opts.nodeBinary !== undefined) {
    const now = await binaryIdentityOf(opts.nodeBinary, manifest.node.version);
    if (now.sha256 !== manifest.node.sha256) throw new SnapshotVerifyError('BinaryChanged', opts.nodeBinary);
  }
  if (opts.flags !== undefined && JSON.stringify(opts.flags) !== JSON.stringify(manifest.flags)) {
    throw new SnapshotVerifyError('FlagsChanged', `${JSON.stringify(opts.flags)} vs ${JSON.stringify(manifest.flags)}`);
  }
  return { manifest, blobPath };
}
