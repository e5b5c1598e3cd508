/** Helpers for tests of Event invocations: functions that record what they receive, read back from the logs. */
import { CreateFunctionCommand, InvokeCommand, type CreateFunctionCommandInput, type LambdaClient } from '@aws-sdk/client-lambda';
import { ROLE, signedHeaders, zipFiles } from './server.js';

export const fnArn = (name: string, qualifier?: string): string =>
  `arn:aws:lambda:us-east-1:000000000000:function:${name}${qualifier === undefined ? '' : `:${qualifier}`}`;

/** Logs every event it receives as one `<tag> <json>` line. */
export const recorder = (tag: string): string =>
  `exports.handler = async (event) => { console.log(${JSON.stringify(tag)} + ' ' + JSON.stringify(event)); return 'recorded'; };`;

export async function createFunction(client: LambdaClient, name: string, code: string, extra: Partial<CreateFunctionCommandInput> = {}): Promise<void> {
  await client.send(new CreateFunctionCommand({
    FunctionName: name, Runtime: 'nodejs24.x', Role: ROLE, Handler: 'index.handler',
    Code: { ZipFile: await zipFiles({ 'index.js': code }) }, ...extra,
  }));
}

/** Send an Event invocation; resolves with its request id (the 202's x-amzn-RequestId). */
export async function invokeEvent(client: LambdaClient, name: string, payload: unknown, qualifier?: string): Promise<string> {
  const r = await client.send(new InvokeCommand({
    FunctionName: name, InvocationType: 'Event', Payload: Buffer.from(JSON.stringify(payload)),
    ...(qualifier === undefined ? {} : { Qualifier: qualifier }),
  }));
  if (r.StatusCode !== 202) throw new Error(`Event invoke answered ${r.StatusCode}`);
  const id = r.$metadata.requestId;
  if (id === undefined) throw new Error('no request id');
  return id;
}

export interface LogEvent { seq: number; requestId: string | null; message: string; version: string; attempt?: number }

/** Every stored log line of a function, through Thaw's log endpoint. */
export async function logLines(baseUrl: string, name: string): Promise<LogEvent[]> {
  const url = new URL(`/thaw/v1/functions/${name}/logs?since=0&limit=10000`, baseUrl);
  const res = await fetch(url, { headers: await signedHeaders(url) });
  if (res.status !== 200) throw new Error(`logs of ${name}: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { events: LogEvent[] }).events;
}

/** The events a recorder function received, parsed from its `<tag> <json>` lines. */
export async function recorded<T = Record<string, unknown>>(baseUrl: string, name: string, tag: string): Promise<T[]> {
  const re = new RegExp(`${tag} (\\{.*\\})$`);
  return (await logLines(baseUrl, name)).flatMap((l) => {
    const m = re.exec(l.message.trimEnd());
    return m === null ? [] : [JSON.parse(m[1] as string) as T];
  });
}

/** Poll `probe` until it returns a value (not undefined), or fail after `timeoutMs`. */
export async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The invocation record a destination recorder got for `requestId`. */
export interface InvocationRecord {
  version: string;
  timestamp: string;
  requestContext: { requestId: string; functionArn: string; condition: string; approximateInvokeCount: number };
  requestPayload: unknown;
  responseContext?: { statusCode: number; executedVersion?: string; functionError?: string };
  responsePayload?: unknown;
}

export async function recordFor(baseUrl: string, sink: string, tag: string, requestId: string, timeoutMs = 60_000): Promise<InvocationRecord> {
  return waitFor(`the invocation record of ${requestId}`, timeoutMs, async () =>
    (await recorded<InvocationRecord>(baseUrl, sink, tag)).find((r) => r.requestContext?.requestId === requestId));
}
