/**
 * AWS Signature Version 4 verification for incoming requests (header and presigned-query forms).
 *
 * The canonical request is rebuilt from the request exactly as it arrived on the wire, the way AWS does it
 * for every service but S3:
 *  - path: normalised (empty and `.` segments dropped, `..` pops) and each segment URI-encoded *again*, so the
 *    wire's `%3A` becomes `%253A`. Signers sign the path they send, so encoding the wire text (rather than
 *    decoding first) matches both SDKs that send `:` encoded and clients that send it raw.
 *  - query: each key and value percent-decoded (`+` is a space, as URLSearchParams reads it, so the verifier
 *    and the handlers agree on what was signed), re-encoded with RFC 3986 rules, sorted by key then value;
 *    any `X-Amz-Signature` is left out.
 *  - headers: the signed ones, values with runs of spaces/tabs collapsed and the ends trimmed.
 *  - payload: the `x-amz-content-sha256` header when present (it must be a SHA-256 and match the body:
 *    `UNSIGNED-PAYLOAD` is refused, so no body can be swapped under a valid signature), else SHA-256 of the
 *    body. With the header, `beginSigV4` checks the signature before the body is read.
 *
 * Error codes are Lambda's (`InvalidSignatureException` and friends, see util/errors.ts), and so are the
 * messages, so SDK users see what AWS would have told them.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface SignedRequest {
  /** 'GET', 'POST', ... */
  method: string;
  /** req.url exactly as node:http gives it: path + '?' + query, still percent-encoded. */
  rawUrl: string;
  /** node:http IncomingMessage.headers (lower-case names). */
  headers: Record<string, string | string[] | undefined>;
  /** The full body (may be empty). */
  body: Buffer;
}

export type SigV4ErrorCode = 'MissingAuthenticationToken' | 'IncompleteSignature' | 'InvalidSignature' | 'UnrecognizedClient';

export type VerifyResult =
  | { ok: true; accessKeyId: string; region: string; service: string }
  | { ok: false; code: SigV4ErrorCode; message: string };

const ALGORITHM = 'AWS4-HMAC-SHA256';
const TERMINATOR = 'aws4_request';
const DEFAULT_MAX_SKEW_MS = 15 * 60 * 1000;
/** AWS refuses presigned URLs that live longer than a week. */
const MAX_EXPIRES_S = 7 * 24 * 60 * 60;

const MSG_MISSING = 'Missing Authentication Token';
const MSG_UNKNOWN_KEY = 'The security token included in the request is invalid.';
const MSG_MISMATCH =
  'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';
export const MSG_PAYLOAD_MISMATCH = "The provided 'x-amz-content-sha256' header does not match what was computed.";
const MSG_UNSIGNED = "UNSIGNED-PAYLOAD is not accepted: 'x-amz-content-sha256' must be the hex SHA-256 of the body.";
const MSG_BAD_PAYLOAD_HASH = "'x-amz-content-sha256' must be the hex SHA-256 of the body.";
const SHA256_HEX = /^[0-9a-fA-F]{64}$/;

/** Query parameters of the presigned form, in the order AWS reports them missing. */
const QUERY_AUTH_PARAMS = ['X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Signature', 'X-Amz-SignedHeaders', 'X-Amz-Date'] as const;

export function verifySigV4(
  req: SignedRequest,
  lookup: (accessKeyId: string) => Credentials | undefined,
  opts: { now?: number; maxSkewMs?: number } = {},
): VerifyResult {
  const begun = beginSigV4(req, lookup, opts);
  if (!begun.ok) return begun;
  const bodyHash = sha256Hex(req.body);
  // The signature covers the declared hash; make sure the body is the one it describes.
  if (begun.declaredSha256 !== undefined) return begun.declaredSha256 === bodyHash ? begun.finish(bodyHash) : fail('InvalidSignature', MSG_PAYLOAD_MISMATCH);
  return begun.finish(bodyHash);
}

/** The part of a signed request that arrives before its body. */
export type SignedHead = Omit<SignedRequest, 'body'>;

/**
 * Everything of SigV4 that can be checked from the request line and headers alone. `finish(payloadHash)`
 * computes the signature over the given payload hash. When the client declared the hash
 * (`x-amz-content-sha256`, lower-cased here), the signature can be checked before a single byte of the body is
 * read; the body must then hash to `declaredSha256`. Without it the body has to be hashed first.
 * `UNSIGNED-PAYLOAD` and the streaming forms are refused: on Lambda's API the body is always signed.
 */
export type BegunSigV4 =
  | { ok: true; accessKeyId: string; declaredSha256: string | undefined; finish: (payloadSha256: string) => VerifyResult }
  | { ok: false; code: SigV4ErrorCode; message: string };

export function beginSigV4(
  req: SignedHead,
  lookup: (accessKeyId: string) => Credentials | undefined,
  opts: { now?: number; maxSkewMs?: number } = {},
): BegunSigV4 {
  const q = req.rawUrl.indexOf('?');
  const rawPath = stripOrigin(q === -1 ? req.rawUrl : req.rawUrl.slice(0, q));
  const query = parseQuery(q === -1 ? '' : req.rawUrl.slice(q + 1));

  const authHeader = headerValue(req.headers, 'authorization');
  let auth: AuthFields | Failure;
  if (authHeader !== undefined) auth = parseAuthHeader(authHeader, req.headers);
  else if (query.some((p) => p.key === 'X-Amz-Algorithm' || p.key === 'X-Amz-Credential' || p.key === 'X-Amz-Signature')) auth = parseAuthQuery(query);
  else return fail('MissingAuthenticationToken', MSG_MISSING);
  if ('code' in auth) return fail(auth.code, auth.message);

  const scope = parseCredential(auth.credential);
  if ('code' in scope) return fail(scope.code, scope.message);

  const time = parseAmzDate(auth.amzDate);
  if (time === undefined) {
    return fail('IncompleteSignature', `Date must be in ISO-8601 'basic format'. Got '${auth.amzDate}'. See http://en.wikipedia.org/wiki/ISO_8601`);
  }
  if (scope.date !== auth.amzDate.slice(0, 8)) {
    return fail(
      'InvalidSignature',
      `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${scope.date}' != '${auth.amzDate.slice(0, 8)}', from '${auth.amzDate}'.`,
    );
  }

  const creds = lookup(scope.accessKeyId);
  if (creds === undefined) return fail('UnrecognizedClient', MSG_UNKNOWN_KEY);

  const skewFailure = checkTime(auth.amzDate, time, opts.now ?? Date.now(), opts.maxSkewMs ?? DEFAULT_MAX_SKEW_MS, auth.expiresS);
  if (skewFailure !== undefined) return fail('InvalidSignature', skewFailure);

  const declared = headerValue(req.headers, 'x-amz-content-sha256');
  if (declared !== undefined && !SHA256_HEX.test(declared)) {
    return fail('InvalidSignature', declared.toUpperCase().includes('UNSIGNED') || declared.startsWith('STREAMING-') ? MSG_UNSIGNED : MSG_BAD_PAYLOAD_HASH);
  }

  let head = `${req.method}\n${canonicalPath(rawPath)}\n${canonicalQuery(query)}\n`;
  for (const name of auth.signedHeaders) head += `${name}:${canonicalHeaderValue(req.headers, name)}\n`;
  head += `\n${auth.signedHeadersRaw}\n`;
  const credentialScope = `${scope.date}/${scope.region}/${scope.service}/${TERMINATOR}`;
  const { amzDate, signature } = auth;
  const key = signingKey(creds.secretAccessKey, scope.date, scope.region, scope.service);
  const finish = (payloadSha256: string): VerifyResult => {
    // A declared hash is signed as the client wrote it.
    const stringToSign = `${ALGORITHM}\n${amzDate}\n${credentialScope}\n${sha256Hex(head + (declared ?? payloadSha256))}`;
    const expected = Buffer.from(createHmac('sha256', key).update(stringToSign, 'utf8').digest('hex'), 'latin1');
    const provided = Buffer.from(signature, 'latin1');
    if (provided.length !== expected.length || !timingSafeEqual(provided, expected)) return fail('InvalidSignature', MSG_MISMATCH);
    return { ok: true, accessKeyId: scope.accessKeyId, region: scope.region, service: scope.service };
  };
  return { ok: true, accessKeyId: scope.accessKeyId, declaredSha256: declared?.toLowerCase(), finish };
}

// ---------------------------------------------------------------------------------------------------------
// Authorization: header and query forms

interface Failure {
  code: SigV4ErrorCode;
  message: string;
}

interface AuthFields {
  credential: string;
  signedHeaders: string[];
  signedHeadersRaw: string;
  signature: string;
  amzDate: string;
  /** Presigned form only: how long the URL lives, in seconds. */
  expiresS: number | undefined;
}

const sha256Hex = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

const fail = (code: SigV4ErrorCode, message: string): { ok: false; code: SigV4ErrorCode; message: string } => ({ ok: false, code, message });

function parseAuthHeader(header: string, headers: SignedRequest['headers']): AuthFields | Failure {
  const sp = header.indexOf(' ');
  const algorithm = sp === -1 ? header : header.slice(0, sp);
  if (algorithm !== ALGORITHM) {
    return { code: 'IncompleteSignature', message: `Unsupported AWS 'algorithm': '${algorithm}'. Only '${ALGORITHM}' is accepted.` };
  }
  const fields = new Map<string, string>();
  for (const part of (sp === -1 ? '' : header.slice(sp + 1)).split(',')) {
    const kv = part.trim();
    if (kv === '') continue;
    const eq = kv.indexOf('=');
    if (eq === -1) {
      return { code: 'IncompleteSignature', message: `Invalid key=value pair (missing equal-sign) in Authorization header: '${header}'.` };
    }
    fields.set(kv.slice(0, eq).trim(), kv.slice(eq + 1).trim());
  }
  const credential = fields.get('Credential');
  const signedHeadersRaw = fields.get('SignedHeaders');
  const signature = fields.get('Signature');
  const amzDate = headerValue(headers, 'x-amz-date') ?? headerValue(headers, 'date');
  if (!credential || !signedHeadersRaw || !signature || amzDate === undefined) {
    let message = '';
    if (!credential) message += "Authorization header requires 'Credential' parameter. ";
    if (!signature) message += "Authorization header requires 'Signature' parameter. ";
    if (!signedHeadersRaw) message += "Authorization header requires 'SignedHeaders' parameter. ";
    if (amzDate === undefined) message += "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ";
    return { code: 'IncompleteSignature', message: `${message}Authorization=${header}` };
  }
  return withSignedHeaders({ credential, signedHeadersRaw, signature, amzDate, expiresS: undefined });
}

function parseAuthQuery(query: QueryPair[]): AuthFields | Failure {
  const found = new Map<string, string>();
  for (const p of query) {
    if (!p.key.startsWith('X-Amz-')) continue;
    if (found.has(p.key)) return { code: 'IncompleteSignature', message: `AWS query-string parameter '${p.key}' must appear only once.` };
    found.set(p.key, decodeComponent(p.rawValue));
  }
  let missing = '';
  for (const name of QUERY_AUTH_PARAMS) {
    if (!found.get(name)) missing += `AWS query-string parameters must include '${name}'. `;
  }
  if (missing !== '') return { code: 'IncompleteSignature', message: `${missing}Re-examine the query-string parameters.` };
  const algorithm = found.get('X-Amz-Algorithm') as string;
  if (algorithm !== ALGORITHM) {
    return { code: 'IncompleteSignature', message: `Unsupported AWS 'algorithm': '${algorithm}'. Only '${ALGORITHM}' is accepted.` };
  }
  let expiresS: number | undefined;
  const expires = found.get('X-Amz-Expires');
  if (expires !== undefined) {
    expiresS = /^\d{1,7}$/.test(expires) ? Number(expires) : NaN;
    if (!(expiresS >= 1 && expiresS <= MAX_EXPIRES_S)) {
      return { code: 'IncompleteSignature', message: `X-Amz-Expires must be an integer between 1 and ${MAX_EXPIRES_S} seconds, not '${expires}'.` };
    }
  }
  return withSignedHeaders({
    credential: found.get('X-Amz-Credential') as string,
    signedHeadersRaw: found.get('X-Amz-SignedHeaders') as string,
    signature: found.get('X-Amz-Signature') as string,
    amzDate: found.get('X-Amz-Date') as string,
    expiresS,
  });
}

const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;

function withSignedHeaders(a: Omit<AuthFields, 'signedHeaders'>): AuthFields | Failure {
  const signedHeaders = a.signedHeadersRaw.split(';');
  for (const name of signedHeaders) {
    if (!HEADER_NAME.test(name)) {
      return { code: 'IncompleteSignature', message: `SignedHeaders must be lower-case header names separated by ';', got '${a.signedHeadersRaw}'.` };
    }
  }
  if (!signedHeaders.includes('host')) {
    return { code: 'IncompleteSignature', message: "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization." };
  }
  return { ...a, signedHeaders };
}

interface Scope {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
}

function parseCredential(credential: string): Scope | Failure {
  const parts = credential.split('/');
  const [accessKeyId, date, region, service, terminator] = parts;
  if (parts.length !== 5 || !accessKeyId || !date || !region || !service || terminator === undefined) {
    return {
      code: 'IncompleteSignature',
      message: `Credential must have the form '<access key>/<YYYYMMDD>/<region>/<service>/${TERMINATOR}', got '${credential}'.`,
    };
  }
  if (terminator !== TERMINATOR) {
    return { code: 'IncompleteSignature', message: `Credential should be scoped with a valid terminator: '${TERMINATOR}', not '${terminator}'.` };
  }
  if (!/^\d{8}$/.test(date)) {
    return { code: 'IncompleteSignature', message: `Credential should be scoped to a valid date in YYYYMMDD form, not '${date}'.` };
  }
  return { accessKeyId, date, region, service };
}

// ---------------------------------------------------------------------------------------------------------
// Time

const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

/** Milliseconds since the epoch for an ISO-8601 basic-format timestamp, or undefined if it is not one. */
function parseAmzDate(s: string): number | undefined {
  const m = AMZ_DATE.exec(s);
  if (m === null) return undefined;
  const [y, mo, d, h, mi, se] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number, number];
  const t = Date.UTC(y, mo - 1, d, h, mi, se);
  // Reject dates that Date.UTC would silently roll over (month 13, 31 February, 25 o'clock).
  return formatAmzDate(t) === s ? t : undefined;
}

function formatAmzDate(t: number): string {
  return new Date(t).toISOString().replace(/[-:]|\.\d{3}/g, '');
}

function checkTime(amzDate: string, t: number, now: number, maxSkewMs: number, expiresS: number | undefined): string | undefined {
  const windowMs = expiresS === undefined ? maxSkewMs : expiresS * 1000;
  const windowText = expiresS === undefined ? duration(maxSkewMs) : `${expiresS} sec.`;
  if (t < now - windowMs) {
    return `Signature expired: ${amzDate} is now earlier than ${formatAmzDate(now - windowMs)} (${formatAmzDate(now)} - ${windowText})`;
  }
  if (t > now + maxSkewMs) {
    return `Signature not yet current: ${amzDate} is still later than ${formatAmzDate(now + maxSkewMs)} (${formatAmzDate(now)} + ${duration(maxSkewMs)})`;
  }
  return undefined;
}

const duration = (ms: number): string => (ms % 60_000 === 0 ? `${ms / 60_000} min.` : `${ms / 1000} sec.`);

// ---------------------------------------------------------------------------------------------------------
// Canonical request parts

/** RFC 3986 encoding of one byte: unreserved characters stay, everything else becomes %XX. */
const BYTE_ENCODED: readonly string[] = Array.from({ length: 256 }, (_, b) => {
  const c = String.fromCharCode(b);
  return /[A-Za-z0-9\-._~]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
});
const UNRESERVED_ONLY = /^[A-Za-z0-9\-._~]*$/;

function encodeBytes(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) out += BYTE_ENCODED[b] as string;
  return out;
}

/** Absolute-form request targets (`GET http://host/path`) carry the origin in the URL; the signed path is after it. */
function stripOrigin(path: string): string {
  if (path.startsWith('/')) return path;
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*/.exec(path);
  return m === null ? path : path.slice(m[0].length) || '/';
}

/** The path as signed with uriEscapePath=true: normalised, then each wire segment encoded once more. */
function canonicalPath(path: string): string {
  const segments: string[] = [];
  for (const seg of path.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') segments.pop();
    else segments.push(UNRESERVED_ONLY.test(seg) ? seg : encodeBytes(Buffer.from(seg, 'utf8')));
  }
  const lead = path.startsWith('/') ? '/' : '';
  const trail = segments.length > 0 && path.endsWith('/') ? '/' : '';
  return lead + segments.join('/') + trail;
}

interface QueryPair {
  /** Canonical (decoded, then RFC 3986 encoded) key and value. */
  key: string;
  value: string;
  rawValue: string;
}

function parseQuery(raw: string): QueryPair[] {
  const pairs: QueryPair[] = [];
  if (raw === '') return pairs;
  for (const part of raw.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const rawKey = eq === -1 ? part : part.slice(0, eq);
    const rawValue = eq === -1 ? '' : part.slice(eq + 1);
    pairs.push({ key: canonicalComponent(rawKey), value: canonicalComponent(rawValue), rawValue });
  }
  return pairs;
}

function canonicalQuery(pairs: QueryPair[]): string {
  const signed = pairs.filter((p) => p.key.toLowerCase() !== 'x-amz-signature');
  signed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.value < b.value ? -1 : a.value > b.value ? 1 : 0));
  let out = '';
  for (const p of signed) out += `${out === '' ? '' : '&'}${p.key}=${p.value}`;
  return out;
}

const isHex = (c: number): boolean => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);

/** Percent-decode a query component to bytes (`+` is a space; a stray `%` stays itself). */
function decodeBytes(s: string): Buffer {
  const src = Buffer.from(s, 'utf8');
  const out = Buffer.allocUnsafe(src.length);
  let n = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i] as number;
    if (c === 0x25 && i + 2 < src.length && isHex(src[i + 1] as number) && isHex(src[i + 2] as number)) {
      out[n++] = parseInt(String.fromCharCode(src[i + 1] as number, src[i + 2] as number), 16);
      i += 2;
    } else {
      out[n++] = c === 0x2b ? 0x20 : c;
    }
  }
  return out.subarray(0, n);
}

function canonicalComponent(s: string): string {
  return UNRESERVED_ONLY.test(s) ? s : encodeBytes(decodeBytes(s));
}

function decodeComponent(s: string): string {
  return UNRESERVED_ONLY.test(s) ? s : decodeBytes(s).toString('utf8');
}

function headerValue(headers: SignedRequest['headers'], name: string): string | undefined {
  const v = Object.hasOwn(headers, name) ? headers[name] : undefined;
  return Array.isArray(v) ? v.join(',') : v;
}

function canonicalHeaderValue(headers: SignedRequest['headers'], name: string): string {
  const v = headerValue(headers, name) ?? '';
  return /[\t\r\n]| {2}|^ | $/.test(v) ? v.replace(/[\r\n]/g, ' ').replace(/[ \t]+/g, ' ').replace(/^ | $/g, '') : v;
}

// ---------------------------------------------------------------------------------------------------------
// Signing keys: four HMACs to derive, the same for a whole day, so cached.

const KEY_CACHE_MAX = 256;
const keyCache = new Map<string, Buffer>();

function signingKey(secret: string, date: string, region: string, service: string): Buffer {
  // region and service come from a '/'-split, date is digits: the secret last keeps the id unambiguous.
  const id = `${date}/${region}/${service}/${secret}`;
  const hit = keyCache.get(id);
  if (hit !== undefined) return hit;
  const kDate = createHmac('sha256', `AWS4${secret}`).update(date, 'utf8').digest();
  const kRegion = createHmac('sha256', kDate).update(region, 'utf8').digest();
  const kService = createHmac('sha256', kRegion).update(service, 'utf8').digest();
  const key = createHmac('sha256', kService).update(TERMINATOR, 'utf8').digest();
  if (keyCache.size >= KEY_CACHE_MAX) {
    const oldest = keyCache.keys().next();
    if (oldest.done !== true) keyCache.delete(oldest.value);
  }
  keyCache.set(id, key);
  return key;
}
