import type { AttemptResult } from './queue.js';

/**
 * Why an invocation record is sent: OnSuccess gets Success, OnFailure the others. RecursiveInvocationDetected is
 * Thaw's name for an event that was not invoked because its chain made too many invocations (loop-guard.ts).
 */
export type RecordCondition = 'Success' | 'RetriesExhausted' | 'EventAgeExceeded' | 'RecursiveInvocationDetected';

/** A payload as the record carries it: the JSON value, or the text when it is not JSON. */
function jsonOrText(text: string): unknown {
  if (text === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/**
 * The invocation record that Lambda sends to an asynchronous invocation's destination (version 1.0):
 * request context, the event, and the last response. An event that expired before any attempt has no
 * response, so its record has neither responseContext nor responsePayload.
 */
export function invocationRecord(o: {
  readonly requestId: string;
  /** The invoked function's ARN with its qualifier ($LATEST when invoked unqualified). */
  readonly functionArn: string;
  readonly condition: RecordCondition;
  readonly approximateInvokeCount: number;
  readonly requestPayload: Buffer;
  readonly result: AttemptResult | null;
  readonly timestamp: number;
}): Record<string, unknown> {
  const record: Record<string, unknown> = {
    version: '1.0',
    timestamp: new Date(o.timestamp).toISOString(),
    requestContext: {
      requestId: o.requestId,
      functionArn: o.functionArn,
      condition: o.condition,
      approximateInvokeCount: o.approximateInvokeCount,
    },
    requestPayload: jsonOrText(o.requestPayload.length === 0 ? '{}' : o.requestPayload.toString('utf8')),
  };
  if (o.result !== null) {
    record.responseContext = {
      statusCode: o.result.statusCode,
      ...(o.result.executedVersion === null ? {} : { executedVersion: o.result.executedVersion }),
      ...(o.result.functionError === undefined ? {} : { functionError: o.result.functionError }),
    };
    record.responsePayload = jsonOrText(o.result.payload);
  }
  return record;
}

/**
 * A record as a destination receives it, within the event size limit: Lambda leaves the payload out of a record
 * that would exceed what the destination takes. The response payload goes first; if the record is still too
 * large, the request payload too. What remains (version, timestamp, contexts) is a few hundred bytes. A payload
 * that cannot be written back as JSON at all (nested deeper than the serialiser's stack) is left out the same way.
 */
export function recordWithin(record: Record<string, unknown>, limit: number): Buffer {
  let body = serialise(record);
  for (const field of ['responsePayload', 'requestPayload'] as const) {
    if ((body !== undefined && body.length <= limit) || !(field in record)) continue;
    const { [field]: _dropped, ...rest } = record;
    record = rest;
    body = serialise(record);
  }
  return body ?? Buffer.from('{}');
}

function serialise(record: Record<string, unknown>): Buffer | undefined {
  try {
    return Buffer.from(JSON.stringify(record));
  } catch {
    return undefined;
  }
}
