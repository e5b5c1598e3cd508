/**
 * Where the API is and who we are: `--endpoint` (else $THAW_ENDPOINT, else http://127.0.0.1:9000) and SigV4
 * credentials from $THAW_ACCESS_KEY_ID / $THAW_SECRET_ACCESS_KEY (else the AWS_ pair). Lambda's own API goes
 * through @aws-sdk/client-lambda; Thaw's endpoints (/thaw/v1/...) are signed the same way by hand.
 */
import { LambdaClient } from '@aws-sdk/client-lambda';
import { SignatureV4 } from '@smithy/signature-v4';
import type { Command } from 'commander';
import { ApiError, CliError, UNREACHABLE, networkCode } from './errors.js';
import { Sha256 } from './sha256.js';

export const DEFAULT_ENDPOINT = 'http://127.0.0.1:9000';
/** Thaw is one region; SigV4 still needs a name for it. */
export const REGION = 'us-east-1';

/** Flags every client command takes. */
export interface ClientFlags {
  endpoint?: string;
  json?: boolean;
}

export interface Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

export interface Connection {
  /** The API's base URL, without a trailing slash. */
  readonly endpoint: string;
  readonly credentials: Credentials;
}

export interface Session {
  readonly conn: Connection;
  readonly lambda: LambdaClient;
  readonly json: boolean;
  /** GET or POST one of Thaw's own endpoints, signed; resolves to the parsed JSON answer. */
  thaw<T>(method: 'GET' | 'POST', path: string, query?: Record<string, string | number | undefined>, signal?: AbortSignal): Promise<T>;
}

export function addClientOptions(cmd: Command): Command {
  return cmd
    .option('--endpoint <url>', `Thaw API (default: $THAW_ENDPOINT, else ${DEFAULT_ENDPOINT})`)
    .option('--json', 'machine-readable output (JSON)');
}

const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);

export function connection(flags: ClientFlags, env: NodeJS.ProcessEnv = process.env): Connection {
  const raw = flags.endpoint ?? nonEmpty(env.THAW_ENDPOINT) ?? DEFAULT_ENDPOINT;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(`endpoint ${raw} is not a URL (expected something like ${DEFAULT_ENDPOINT})`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError(`endpoint ${raw} must be an http:// or https:// URL`);
  return { endpoint: url.href.replace(/\/+$/, ''), credentials: credentialsFrom(env) };
}

function credentialsFrom(env: NodeJS.ProcessEnv): Credentials {
  for (const prefix of ['THAW', 'AWS'] as const) {
    const id = nonEmpty(env[`${prefix}_ACCESS_KEY_ID`]);
    const secret = nonEmpty(env[`${prefix}_SECRET_ACCESS_KEY`]);
    if (id !== undefined && secret !== undefined) return { accessKeyId: id, secretAccessKey: secret };
    if (id !== undefined || secret !== undefined) {
      const missing = id === undefined ? `${prefix}_ACCESS_KEY_ID` : `${prefix}_SECRET_ACCESS_KEY`;
      throw new CliError(`${missing} is not set (both ${prefix}_ACCESS_KEY_ID and ${prefix}_SECRET_ACCESS_KEY are needed)`);
    }
  }
  throw new CliError(
    'no credentials: set THAW_ACCESS_KEY_ID and THAW_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) ' +
      "to the server's key pair; `thaw serve` without them writes one to DATA/credentials.json",
  );
}

/**
 * Run a client command: connect, run, and always release the client. Connection failures become one line
 * that names the endpoint.
 */
export async function withSession(flags: ClientFlags, fn: (s: Session) => Promise<void>): Promise<void> {
  const conn = connection(flags);
  // The SDK warns on every run under Node 20 that its 2027 releases will need Node 22: not the user's concern
  // at the moment they run a command (package.json's engines field is where the project's support is stated).
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const lambda = new LambdaClient({ endpoint: conn.endpoint, region: REGION, credentials: conn.credentials });
  const signer = new SignatureV4({ service: 'lambda', region: REGION, credentials: conn.credentials, sha256: Sha256 });
  const session: Session = {
    conn,
    lambda,
    json: flags.json === true,
    thaw: (method, path, query, signal) => thawRequest(conn, signer, method, path, query ?? {}, signal),
  };
  try {
    await fn(session);
  } catch (e) {
    const code = networkCode(e);
    if (code !== undefined && UNREACHABLE.has(code)) throw new CliError(`cannot reach Thaw at ${conn.endpoint} (${code}); is \`thaw serve\` running there?`);
    if (code !== undefined) throw new CliError(`lost the connection to Thaw at ${conn.endpoint} (${code})`);
    throw e;
  } finally {
    lambda.destroy();
  }
}

async function thawRequest<T>(
  conn: Connection,
  signer: SignatureV4,
  method: 'GET' | 'POST',
  path: string,
  query: Record<string, string | number | undefined>,
  signal: AbortSignal | undefined,
): Promise<T> {
  const url = new URL(conn.endpoint + path);
  for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, String(v));
  const q: Record<string, string> = {};
  url.searchParams.forEach((v, k) => {
    q[k] = v;
  });
  const signed = await signer.sign({
    method,
    protocol: url.protocol,
    hostname: url.hostname,
    ...(url.port === '' ? {} : { port: Number(url.port) }),
    path: url.pathname,
    query: q,
    headers: { host: url.host },
    body: '',
  });
  // fetch sets Host itself, to the same url.host that was signed.
  const headers = Object.fromEntries(Object.entries(signed.headers).filter(([k]) => k.toLowerCase() !== 'host'));
  const res = await fetch(url, { method, headers, ...(signal === undefined ? {} : { signal }) });
  const text = await res.text();
  let body: unknown;
  try {
    body = text === '' ? {} : JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    const type = (res.headers.get('x-amzn-errortype') ?? '').split(':')[0] || `HTTP ${res.status}`;
    const b = body as { Message?: unknown; message?: unknown } | undefined;
    const message = typeof b?.Message === 'string' ? b.Message : typeof b?.message === 'string' ? b.message : text.slice(0, 200);
    throw new ApiError(type, message, res.status);
  }
  if (body === undefined) throw new ApiError('InvalidResponse', `${method} ${path} did not answer with JSON`, res.status);
  return body as T;
}

/** Every item of a Marker/NextMarker-paged Lambda list operation: `page(marker)` fetches one page. */
export async function allPages<T>(page: (marker: string | undefined) => Promise<{ items: T[] | undefined; next: string | undefined }>): Promise<T[]> {
  const all: T[] = [];
  let marker: string | undefined;
  do {
    const p = await page(marker);
    all.push(...(p.items ?? []));
    marker = p.next;
  } while (marker !== undefined);
  return all;
}
