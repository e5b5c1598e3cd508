import type { AttemptResult } from './queue.js';

/** Why an invocation record is sent: OnSuccess gets Success, OnFailure the other two. */
export type RecordCondition = 'Success' | 'RetriesExhausted' | 'EventAgeExceeded';

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
