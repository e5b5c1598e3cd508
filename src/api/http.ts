import type { ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { ThawError, isThawError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { checkJsonDepth } from './json-depth.js';
import { MAX_JSON_DEPTH } from './limits.js';

export function parseJson(body: Buffer): unknown {
  if (body.length === 0) return {};
  checkJsonDepth(body, MAX_JSON_DEPTH);
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch {
    throw new ThawError('InvalidRequestContent', 'Could not parse request body into json');
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/**
 * Lambda's error shape: status, x-amzn-ErrorType header and a JSON body with Type and Message (plus
 * structured fields such as Reason). System errors never put internals on the wire.
 */
export function sendError(res: ServerResponse, e: unknown, logger: Logger): void {
  const err = isThawError(e) ? e : new ThawError('Service', 'An internal error occurred. Check the server log.', {}, { cause: e });
  if (!isThawError(e)) logger.error({ err: e }, 'unexpected error');
  const kind = err.status >= 500 ? 'Service' : 'User';
  const body: Record<string, unknown> = { Type: kind, message: err.message, Message: err.message, ...err.fields };
  const headers: Record<string, string> = { 'x-amzn-errortype': err.type };
  if (err.code === 'TooManyRequests') headers['retry-after'] = '1';
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, err.status, body, headers);
}

export const requestId = (): string => randomUUID();

/** Query parameters, keeping the first value of each and all values separately. */
export function queryOf(url: URL): { get: (k: string) => string | undefined; all: (k: string) => string[] } {
  return {
    get: (k) => url.searchParams.get(k) ?? undefined,
    all: (k) => url.searchParams.getAll(k),
  };
}

export function intParam(v: string | undefined, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ThawError('InvalidParameterValue', `${name} must be an integer between ${min} and ${max}`);
  }
  return n;
}
