import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { brotliCompressSync, brotliDecompressSync, constants as zc } from 'node:zlib';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { StoreError } from './errors.js';

/** Fixed chunk size: every artifact is cut into chunks of this many bytes (the last of a segment may be shorter). */
export const CHUNK_SIZE = 512 * 1024;

const TAG_BYTES = 16;
/** Format byte in front of every sealed chunk: the plaintext as it is (every chunk written before compression). */
const FORMAT_PLAIN = 1;
/** The plaintext compressed with brotli; the format byte is authenticated data. */
const FORMAT_BROTLI = 2;
/**
 * Brotli quality 1: on JavaScript (node_modules) 6.8:1 at about 210 MB/s compressing and 380 MB/s decompressing on
 * this project's machine, against deflate level 1's 5.2:1 at 120 / 390 MB/s; higher qualities gain 20% for 5-10
 * times the time. A chunk is stored compressed only when that saves at least an eighth.
 */
const BROTLI = { params: { [zc.BROTLI_PARAM_QUALITY]: 1, [zc.BROTLI_PARAM_SIZE_HINT]: CHUNK_SIZE } };
const WORTH = 1 / 8;

export const sha256Hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/**
 * Convergent encryption of chunks. The key of a chunk is HMAC-SHA256(deployment secret, SHA-256 of its
 * plaintext), so equal plaintext gives equal ciphertext (dedup survives encryption) and nothing can be read or
 * even recognised without the secret: the name a chunk is stored under (its locator) is derived from the key
 * too, not from the plaintext hash. A key encrypts exactly one plaintext, so the AES-256-GCM nonce is derived
 * from it. Opening checks the GCM tag and then the plaintext's SHA-256.
 *
 *   sealed = 0x01 || AES-256-GCM(key, nonce = HMAC(key, "nonce")[0..12], plaintext) || tag
 *   sealed = 0x02 || AES-256-GCM(key, nonce, aad = 0x02, brotli(plaintext)) || tag
 *
 * Compression comes before encryption (ciphertext does not compress) and keys still come from the plaintext hash,
 * so equal plaintext still has one locator and dedup is unaffected. Both formats are read.
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

  seal(plain: Buffer, hash = sha256Hex(plain), o: { compress?: boolean } = {}): { hash: string; locator: string; sealed: Buffer } {
    const key = this.key(hash);
    const nonce = createHmac('sha256', key).update('nonce').digest().subarray(0, 12);
    const c = createCipheriv('aes-256-gcm', key, nonce);
    let format = FORMAT_PLAIN;
    let body = plain;
    if (o.compress ?? true) {
      const packed = brotliCompressSync(plain, BROTLI);
      if (packed.length <= plain.length * (1 - WORTH)) {
        format = FORMAT_BROTLI;
        body = packed;
        c.setAAD(Buffer.of(FORMAT_BROTLI));
      }
    }
    const sealed = Buffer.concat([Buffer.of(format), c.update(body), c.final(), c.getAuthTag()]);
    return { hash, locator: createHmac('sha256', key).update('locator').digest('hex'), sealed };
  }

  /** The plaintext of a sealed chunk, verified; throws StoreError ChunkCorrupt. */
  open(hash: string, sealed: Buffer): Buffer {
    const format = sealed[0];
    if (sealed.length < 1 + TAG_BYTES || (format !== FORMAT_PLAIN && format !== FORMAT_BROTLI)) throw corrupt(hash, 'bad framing');
    const key = this.key(hash);
    const nonce = createHmac('sha256', key).update('nonce').digest().subarray(0, 12);
    const d = createDecipheriv('aes-256-gcm', key, nonce);
    d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    if (format === FORMAT_BROTLI) d.setAAD(Buffer.of(FORMAT_BROTLI));
    let plain: Buffer;
    try {
      plain = Buffer.concat([d.update(sealed.subarray(1, sealed.length - TAG_BYTES)), d.final()]);
    } catch {
      throw corrupt(hash, 'authentication tag mismatch');
    }
    if (format === FORMAT_BROTLI) {
      try {
        // Authenticated, so written by a holder of the secret; bounded all the same.
        plain = brotliDecompressSync(plain, { maxOutputLength: CHUNK_SIZE });
      } catch {
        throw corrupt(hash, 'does not decompress');
      }
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
