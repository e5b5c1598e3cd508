import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { StoreError } from './errors.js';

/** Fixed chunk size: every artifact is cut into chunks of this many bytes (the last of a segment may be shorter). */
export const CHUNK_SIZE = 512 * 1024;

const TAG_BYTES = 16;
/** Format byte in front of every sealed chunk. */
const FORMAT = 1;

export const sha256Hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/**
 * Convergent encryption of chunks. The key of a chunk is HMAC-SHA256(deployment secret, SHA-256 of its
 * plaintext), so equal plaintext gives equal ciphertext (dedup survives encryption) and nothing can be read or
 * even recognised without the secret: the name a chunk is stored under (its locator) is derived from the key
 * too, not from the plaintext hash. A key encrypts exactly one plaintext, so the AES-256-GCM nonce is derived
 * from it. Opening checks the GCM tag and then the plaintext's SHA-256.
 *
 *   sealed = 0x01 || AES-256-GCM(key, nonce = HMAC(key, "nonce")[0..12], plaintext) || tag
 */
export class Sealer {
  constructor(private readonly secret: Buffer) {
    if (secret.length < 16) throw new StoreError('SecretInvalid', 'the store secret must be at least 16 bytes');
  }

  private key(hash: string): Buffer {
    return createHmac('sha256', this.secret).update(Buffer.from(hash, 'hex')).digest();
  }

  /** Where a chunk is stored in every tier. */
  locator(hash: string): string {
    return createHmac('sha256', this.key(hash)).update('locator').digest('hex');
  }

  seal(plain: Buffer, hash = sha256Hex(plain)): { hash: string; locator: string; sealed: Buffer } {
    const key = this.key(hash);
    const nonce = createHmac('sha256', key).update('nonce').digest().subarray(0, 12);
    const c = createCipheriv('aes-256-gcm', key, nonce);
    const body = Buffer.concat([Buffer.of(FORMAT), c.update(plain), c.final(), c.getAuthTag()]);
    return { hash, locator: createHmac('sha256', key).update('locator').digest('hex'), sealed: body };
  }

  /** The plaintext of a sealed chunk, verified; throws StoreError ChunkCorrupt. */
  open(hash: string, sealed: Buffer): Buffer {
    if (sealed.length < 1 + TAG_BYTES || sealed[0] !== FORMAT) throw corrupt(hash, 'bad framing');
    const key = this.key(hash);
    const nonce = createHmac('sha256', key).update('nonce').digest().subarray(0, 12);
    const d = createDecipheriv('aes-256-gcm', key, nonce);
    d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    let plain: Buffer;
    try {
      plain = Buffer.concat([d.update(sealed.subarray(1, sealed.length - TAG_BYTES)), d.final()]);
    } catch {
      throw corrupt(hash, 'authentication tag mismatch');
    }
    if (sha256Hex(plain) !== hash) throw corrupt(hash, 'plaintext SHA-256 mismatch');
    return plain;
  }
}

const corrupt = (hash: string, why: string): StoreError =>
  new StoreError('ChunkCorrupt', `chunk ${hash.slice(0, 16)} failed verification (${why})`, { hash, why });

export const SECRET_ENV = 'THAW_STORE_SECRET';

/**
 * The deployment secret: $THAW_STORE_SECRET (64 hex digits, or any string of 16 bytes or more), else the
 * file given (created once with 32 random bytes, mode 0600).
 */
export function loadSecret(file: string, env: NodeJS.ProcessEnv = process.env): Buffer {
  const v = env[SECRET_ENV];
  if (v !== undefined && v !== '') return /^[0-9a-fA-F]{64}$/.test(v) ? Buffer.from(v, 'hex') : Buffer.from(v, 'utf8');
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    try {
      writeFileSync(file, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  const text = readFileSync(file, 'utf8').trim();
  if (!/^[0-9a-f]{64}$/.test(text)) throw new StoreError('SecretInvalid', `${file} does not hold a store secret (64 hex digits)`);
  return Buffer.from(text, 'hex');
}
