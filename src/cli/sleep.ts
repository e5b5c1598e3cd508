import { setTimeout as delay } from 'node:timers/promises';

/** Wait `ms`; resolves early (never rejects) when the signal aborts. */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  await delay(ms, undefined, signal === undefined ? undefined : { signal }).catch(() => undefined);
}
