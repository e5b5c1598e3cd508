import { randomUUID } from 'node:crypto';
import type { Logger } from '../util/log.js';
import { ThawError } from '../util/errors.js';
import type { Registry } from '../control/registry.js';
import type { AliasRecord, VersionRecord } from '../control/model.js';
import { functionArn } from '../control/arn.js';
import type { Pool } from '../worker/pool.js';
import type { Concurrency } from './concurrency.js';

export const MAX_SYNC_PAYLOAD = 6 * 1024 * 1024;
export const MAX_EVENT_PAYLOAD = 256 * 1024;

export interface InvokeRequest {
  readonly functionName: string;
  readonly qualifier: string | undefined;
  readonly payload: Buffer;
  /** Client context as the caller sent it: base64 of a JSON object. */
  readonly clientContextBase64?: string;
}

export interface InvokeResult {
  readonly requestId: string;
  readonly payload: Buffer;
  readonly functionError?: 'Unhandled';
  readonly executedVersion: string;
  /** The last 4 KB of the invocation's log (LogType=Tail); empty when the caller did not wait for it. */
  readonly tail: Buffer;
  readonly cold: boolean;
}

/**
 * The invoke path: resolve function and qualifier to a version (alias weights applied), check that the
 * version can run, and hand the invocation to the worker pool. Event invocations go through AsyncInvoker.
 */
export class Invoker {
  constructor(
    private readonly registry: Registry,
    private readonly pool: Pool,
    private readonly region: string,
    private readonly logger: Logger,
    /** Account and function concurrency limits; none when absent. */
    private readonly concurrency?: Concurrency,
  ) {}

  /** Resolve a qualifier to the version that runs this invocation (weighted alias routing). */
  pick(functionName: string, qualifier: string | undefined): { version: VersionRecord; alias?: AliasRecord } {
    const r = this.registry.resolve(functionName, qualifier);
    if (r.alias?.weights == null) return r;
    let roll = Math.random();
    for (const [v, w] of Object.entries(r.alias.weights)) {
      if (roll < w) return { version: this.registry.mustVersion(functionName, v), alias: r.alias };
      roll -= w;
    }
    return r;
  }

  /** Validate everything a synchronous or event invocation needs before it is accepted. */
  check(req: InvokeRequest, maxPayload: number): { version: VersionRecord; clientContext?: string } {
    if (req.payload.length > maxPayload) {
      throw new ThawError('RequestTooLarge', `Request must be smaller than ${maxPayload} bytes for the InvokeFunction operation`);
    }
    if (req.payload.length > 0) {
      try {
        JSON.parse(req.payload.toString('utf8'));
      } catch {
        throw new ThawError('InvalidRequestContent', 'Could not parse request body into json: Could not parse payload into json: Unexpected character: was expecting a JSON value');
      }
    }
    let clientContext: string | undefined;
    if (req.clientContextBase64 !== undefined && req.clientContextBase64 !== '') {
      if (req.clientContextBase64.length > 3583) throw new ThawError('InvalidParameterValue', 'Client context must be smaller than 3583 bytes.');
      const text = Buffer.from(req.clientContextBase64, 'base64').toString('utf8');
      try {
        const v: unknown = JSON.parse(text);
        if (v === null || typeof v !== 'object') throw new Error('not an object');
      } catch {
        throw new ThawError('InvalidRequestContent', 'Client context must be a valid Base64-encoded JSON object.');
      }
      clientContext = text;
    }
    const { version } = this.pick(req.functionName, req.qualifier);
    if (version.state !== 'Active') {
      throw new ThawError('ResourceConflict', `The operation cannot be performed at this time. The function is currently in the following state: ${version.state}`);
    }
    return clientContext === undefined ? { version } : { version, clientContext };
  }

  /** `log`: the caller wants this invocation's log (LogType=Tail), so the result waits until it is complete. */
  async invoke(req: InvokeRequest, requestId: string = randomUUID(), log = false): Promise<InvokeResult> {
    const { version, clientContext } = this.check(req, MAX_SYNC_PAYLOAD);
    return this.run(req, version, clientContext, requestId, log);
  }

  /** Throws TooManyRequests (a ThawError with Lambda's Reason) when the invocation is over a concurrency limit. */
  private async run(req: InvokeRequest, version: VersionRecord, clientContext: string | undefined, requestId: string, log: boolean): Promise<InvokeResult> {
    const release = this.concurrency?.acquire(version.functionName, version.version);
    let out: Awaited<ReturnType<Pool['invoke']>>;
    try {
      out = await this.pool.invoke(version, {
        requestId,
        payload: req.payload.length === 0 ? Buffer.from('{}') : req.payload,
        invokedFunctionArn: functionArn(this.region, req.functionName, req.qualifier),
        ...(clientContext === undefined ? {} : { clientContext }),
      }, { log });
    } finally {
      release?.();
    }
    return {
      requestId,
      payload: out.payload,
      ...(out.functionError === undefined ? {} : { functionError: out.functionError }),
      executedVersion: version.version,
      tail: out.tail,
      cold: out.cold,
    };
  }
}
