import { validateHeaderName, validateHeaderValue } from 'node:http';
import type { InvokeResult } from '../router/invoker.js';

/** A function URL's HTTP response, framed by the server: the function chooses status, headers and body only. */
export interface HttpReply {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[]>>;
  /** Empty for statuses that carry no body (204, 304). */
  readonly body: Buffer;
  /** False for 204 and 304: no body and no Content-Length. */
  readonly hasBody: boolean;
}

/**
 * Headers that describe the connection or the message framing, which belong to the server: a function that
 * sets them would split or hang the client's connection (RFC 9110 §7.6.1, RFC 9112 §6).
 */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'content-length', 'host']);
const BODYLESS = new Set([204, 304]);

const badGateway = (): HttpReply => ({
  status: 502,
  headers: { 'content-type': 'application/json' },
  body: Buffer.from('{"Message":"Internal Server Error"}'),
  hasBody: true,
});

function headerOk(name: string, value: string): boolean {
  try {
    validateHeaderName(name);
    validateHeaderValue(name, value);
    return true;
  } catch {
    return false;
  }
}

/**
 * Map the function's result to HTTP, inferring the response format as Lambda does. What the function returns
 * is untrusted: a status outside 200-599 (1xx would switch protocols or never finish the response), a header
 * name or value that HTTP cannot carry (CR, LF, NUL...), or a body that cannot be serialised answer 502, as
 * Lambda does; framing and connection headers are dropped.
 */
export function urlReply(r: InvokeResult): HttpReply {
  if (r.functionError !== undefined) return badGateway();
  let value: unknown;
  try {
    value = JSON.parse(r.payload.toString('utf8'));
  } catch {
    return badGateway();
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value) || !('statusCode' in value)) {
    const body = typeof value === 'string' ? Buffer.from(value) : r.payload;
    return { status: 200, headers: { 'content-type': 'application/json' }, body, hasBody: true };
  }
  const o = value as { statusCode: unknown; headers?: unknown; body?: unknown; isBase64Encoded?: unknown; cookies?: unknown };
  const status = typeof o.statusCode === 'number' || typeof o.statusCode === 'string' ? Number(o.statusCode) : NaN;
  if (!Number.isInteger(status) || status < 200 || status > 599) return badGateway();
  const headers: Record<string, string | string[]> = {};
  if (o.headers !== undefined && o.headers !== null) {
    if (typeof o.headers !== 'object' || Array.isArray(o.headers)) return badGateway();
    for (const [k, v] of Object.entries(o.headers)) {
      const name = k.toLowerCase();
      const text = typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined;
      if (text === undefined || !headerOk(name, text)) return badGateway();
      if (HOP_BY_HOP.has(name) || name.startsWith('proxy-')) continue;
      headers[name] = text;
    }
  }
  if (Array.isArray(o.cookies)) {
    const cookies = o.cookies.map((c) => (typeof c === 'string' ? c : undefined));
    if (cookies.some((c) => c === undefined || !headerOk('set-cookie', c))) return badGateway();
    headers['set-cookie'] = cookies as string[];
  }
  if (BODYLESS.has(status)) return { status, headers, body: Buffer.alloc(0), hasBody: false };
  let text: string;
  try {
    text = o.body === undefined || o.body === null ? '' : typeof o.body === 'string' ? o.body : JSON.stringify(o.body);
  } catch {
    return badGateway();
  }
  const body = o.isBase64Encoded === true ? Buffer.from(text, 'base64') : Buffer.from(text, 'utf8');
  return { status, headers, body, hasBody: true };
}

/** The headers sent for a reply: CORS first, the function's own over them; Vary values from both are kept. */
export function replyHeaders(requestId: string, cors: Readonly<Record<string, string>>, reply: HttpReply): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = { 'x-amzn-requestid': requestId, ...cors, ...reply.headers };
  const vary = [cors.vary, reply.headers.vary].filter((v): v is string => typeof v === 'string' && v !== '');
  if (vary.length > 1) out.vary = vary.join(', ');
  if (reply.hasBody) out['content-length'] = String(reply.body.length);
  return out;
}
