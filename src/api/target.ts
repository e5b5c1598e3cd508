import type { IncomingMessage } from 'node:http';
import { ThawError } from '../util/errors.js';

export interface RequestTarget {
  readonly url: URL;
  /** The Host header as sent (validated), or 127.0.0.1 for a client that sent none. */
  readonly host: string;
  /** Base URL the client used to reach us (http://host:port). */
  readonly origin: string;
}

const LABEL = '[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?';
const HOST = new RegExp(`^(?:${LABEL}(?:\\.${LABEL})*\\.?|\\[[0-9A-Fa-f:.]{2,45}\\])(?::[0-9]{1,5})?$`);
const ABSOLUTE = /^https?:\/\/[^/?#]*/i;
const BAD_ESCAPE = /%(?![0-9A-Fa-f]{2})/;

const malformed = (message: string): ThawError => new ThawError('Validation', message);

/**
 * The request's URL from its request line and Host header, refusing (400) what no client produces: a Host
 * that is not a host name, a target that is neither a path nor an absolute http URL, a `%` that is not an
 * escape.
 */
export function requestTarget(req: IncomingMessage): RequestTarget {
  const host = req.headers.host ?? '127.0.0.1';
  if (!HOST.test(host)) throw malformed('The Host header is not a valid host name.');
  let raw = req.url ?? '/';
  const abs = ABSOLUTE.exec(raw);
  if (abs !== null) raw = raw.slice(abs[0].length) || '/';
  if (!raw.startsWith('/') || raw.startsWith('//')) throw malformed('The request target must be an absolute path.');
  const q = raw.indexOf('?');
  const path = q === -1 ? raw : raw.slice(0, q);
  if (BAD_ESCAPE.test(path)) throw malformed('The request path contains a malformed percent escape.');
  let url: URL;
  try {
    url = new URL(raw, `http://${host}`);
  } catch {
    throw malformed('The request target is not a valid URL.');
  }
  return { url, host, origin: `http://${host}` };
}

/** decodeURIComponent for a path parameter; escapes of bytes that are not UTF-8 are refused with 400. */
export function decodePathParam(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw malformed('The request path contains a percent escape that is not UTF-8.');
  }
}
