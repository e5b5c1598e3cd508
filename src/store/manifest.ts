import { z } from 'zod';
import { StoreError } from './errors.js';

/**
 * What an artifact is, as committed in SQLite: its chunks in stream order and, for a file tree, where each
 * file lies in that stream. Manifests name plaintext hashes and paths, so they stay in the state database,
 * never in the chunk origin (a copied origin reveals nothing).
 */
const chunkRef = z.strictObject({
  h: z.string().regex(/^[0-9a-f]{64}$/),
  n: z.number().int().positive(),
  /** Sealed (compressed, encrypted) bytes in the origin; absent in manifests written before compression. */
  s: z.number().int().positive().optional(),
});

const treeEntry = z.strictObject({
  /** Path inside the tree, `/`-separated. */
  p: z.string().min(1),
  /** d: directory, f: file, x: executable file, l: symbolic link. */
  t: z.enum(['d', 'f', 'x', 'l']),
  /** Offset and length of a file's bytes in the chunk stream. */
  o: z.number().int().nonnegative().optional(),
  n: z.number().int().nonnegative().optional(),
  /** A link's target. */
  l: z.string().optional(),
});

const blobManifest = z.strictObject({
  format: z.literal(1),
  type: z.literal('blob'),
  size: z.number().int().nonnegative(),
  /** Bytes its distinct chunks take in the origin (what storage quotas count). */
  stored: z.number().int().nonnegative().optional(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  chunks: z.array(chunkRef),
  meta: z.record(z.string(), z.unknown()).optional(),
});

const treeManifest = z.strictObject({
  format: z.literal(1),
  type: z.literal('tree'),
  size: z.number().int().nonnegative(),
  /** Bytes its distinct chunks take in the origin (what storage quotas count). */
  stored: z.number().int().nonnegative().optional(),
  chunks: z.array(chunkRef),
  entries: z.array(treeEntry),
  meta: z.record(z.string(), z.unknown()).optional(),
});

const manifestSchema = z.discriminatedUnion('type', [blobManifest, treeManifest]);

export type BlobManifest = z.infer<typeof blobManifest>;
export type TreeManifest = z.infer<typeof treeManifest>;
export type TreeEntry = z.infer<typeof treeEntry>;
export type Manifest = z.infer<typeof manifestSchema>;

export function parseManifest(name: string, text: string): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new StoreError('ManifestInvalid', `manifest of ${name} is not JSON`, { name });
  }
  const r = manifestSchema.safeParse(raw);
  if (!r.success) throw new StoreError('ManifestInvalid', `manifest of ${name}: ${r.error.issues[0]?.message ?? 'invalid'}`, { name });
  return r.data;
}
