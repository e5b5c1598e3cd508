/**
 * Store failures with stable codes. ChunkCorrupt and ChunkMissing mean a chunk could not be read intact from
 * any tier: the artifact is not materialised and nothing of it runs.
 */
export type StoreErrorCode = 'ChunkCorrupt' | 'ChunkMissing' | 'ArtifactMissing' | 'SecretInvalid' | 'ManifestInvalid';

export class StoreError extends Error {
  readonly code: StoreErrorCode;
  readonly fields: Readonly<Record<string, unknown>>;

  constructor(code: StoreErrorCode, message: string, fields: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
    this.code = code;
    this.fields = Object.freeze({ ...fields });
  }
}

export const isStoreError = (e: unknown, code?: StoreErrorCode): e is StoreError =>
  e instanceof StoreError && (code === undefined || e.code === code);
